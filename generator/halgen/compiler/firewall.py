"""Who may reach what: one list of inbound rules per node, the single source of both
the nodes' ufw rules and the Linode Cloud Firewall of each role."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from halgen.compiler.model import (
    ACME_RELAY_PORT,
    MTAIL_PORT,
    NGINX_EXPORTER_PORT,
    NODE_EXPORTER_PORT,
    Node,
    Stack,
    exact_blocks,
)
from halgen.errors import HalgenError

ANYWHERE = ("0.0.0.0/0",)
ANYWHERE_V6 = ("::/0",)
# Linode Cloud Firewall limits (shared/research/linode.md)
MAX_RULES = 25
MAX_PORT_ENTRIES = 15
MAX_ADDRESSES = 255


class FirewallError(HalgenError):
    pass


@dataclass(frozen=True)
class FirewallRule:
    label: str  # Linode labels: letters, digits, '-', '_', '.'; 3-32 characters
    ports: tuple[int, ...]
    sources: tuple[str, ...]  # IPv4 CIDRs
    public: bool = False  # also from every IPv6 address

    @property
    def ports_text(self) -> str:
        return ",".join(str(p) for p in self.ports)


def _hosts(nodes: tuple[Node, ...] | list[Node]) -> tuple[str, ...]:
    return _blocks(frozenset(n.address for n in nodes))


@lru_cache(maxsize=64)
def _blocks(addresses: frozenset[str]) -> tuple[str, ...]:
    # Every app node asks for the same peer lists: work each list out once.
    return exact_blocks(addresses)


def _address_key(cidr: str) -> tuple[int, ...]:
    # Address, then prefix length: two CIDRs never tie, so the order never depends on set iteration.
    address, _, prefix = cidr.partition("/")
    return (*(int(part) for part in address.split(".")), int(prefix or 32))


def node_rules(stack: Stack, node: Node) -> list[FirewallRule]:
    rules = [FirewallRule("ssh-admins", (22,), tuple(stack.a.admin_cidrs))]
    # the monitoring node's Redis exporter too: Sentinels may sit on app nodes, and one role's
    # Cloud Firewall must have one 'monitoring' rule for all of them
    sentinel_clients = _hosts(list(stack.apps) + list(stack.sentinels) + list(stack.mons))
    if node.role == "lb":
        # 443 only with TLS: an open port with nothing behind it is a hole waiting for a listener.
        web = (80, 443) if stack.a.lb_tls else (80,)
        rules.append(FirewallRule("web-public", web, ANYWHERE, public=True))
        if stack.acme_relay:
            peers = [lb for lb in stack.lbs if lb != node]
            rules.append(FirewallRule("acme-relay-from-lbs", (ACME_RELAY_PORT,), _hosts(peers)))
    elif node.role == "app":
        ports = tuple(i.port for i in node.instances)
        rules.append(FirewallRule("app-from-lbs", ports, _hosts(stack.lbs)))
    elif node.role == "db":
        rules.append(FirewallRule("postgres-peers", (stack.pg_port,), _hosts(list(stack.apps) + list(stack.dbs))))
    elif node.role == "redis":
        peers = list(stack.apps) + list(stack.redis) + list(stack.sentinels)
        rules.append(FirewallRule("redis-peers", (stack.redis_port,), _hosts(peers)))
    if node.sentinel:
        rules.append(FirewallRule("sentinel-peers", (stack.sentinel_port,), sentinel_clients))
    if node.patroni:
        # Members ask each other's REST API (failsafe, who is healthiest) before promoting.
        rules.append(FirewallRule("patroni-peers", (stack.patroni_port,), _hosts(stack.dbs)))
    if node.etcd:
        members = list(stack.etcd_members)
        rules.append(FirewallRule("etcd-clients", (stack.etcd_client_port,), _hosts(list(stack.dbs) + members)))
        rules.append(FirewallRule("etcd-peers", (stack.etcd_peer_port,), _hosts(members)))
    if stack.mons and node.role != "mon":
        rules.append(FirewallRule("monitoring", monitored_ports(stack, node), _hosts(stack.mons)))
        if node.instances:  # the health probes, as HAProxy's (a rule of their own: Linode allows 15 ports in one)
            rules.append(FirewallRule("app-probes", tuple(i.port for i in node.instances), _hosts(stack.mons)))
    return rules


def monitored_ports(stack: Stack, node: Node) -> tuple[int, ...]:
    """The metrics the monitoring node reads on ``node``: node_exporter; on a load balancer
    the nginx exporter and mtail; PostgreSQL and Patroni's API, Redis (their exporters run
    on the monitoring node; Sentinel's port admits it in sentinel-peers)."""
    ports = [NODE_EXPORTER_PORT]
    if node.role == "lb":
        ports += [NGINX_EXPORTER_PORT, MTAIL_PORT]
    if node.role == "db":
        ports += [stack.pg_port] + ([stack.patroni_port] if node.patroni else [])
    if node.role == "redis":
        ports.append(stack.redis_port)
    return tuple(sorted(ports))  # as ufw lists them


def role_rules(stack: Stack, role: str) -> list[FirewallRule]:
    """The union of a role's node rules: one Cloud Firewall serves every node of a role."""
    merged: dict[tuple[str, tuple[int, ...], bool], set[str]] = {}
    for node in stack.by_role[role]:
        for rule in node_rules(stack, node):
            merged.setdefault((rule.label, rule.ports, rule.public), set()).update(rule.sources)
    return [FirewallRule(label, ports, tuple(sorted(sources, key=_address_key)), public)
            for (label, ports, public), sources in merged.items()]


def cloud_firewall(stack: Stack, role: str) -> dict[str, Any]:
    """A Linode Cloud Firewall in the API's shape (POST /networking/firewalls)."""
    rules = role_rules(stack, role)
    inbound = []
    for rule in rules:
        if len(rule.ports) > MAX_PORT_ENTRIES:
            raise FirewallError(f"{role}: rule {rule.label} has {len(rule.ports)} port entries (Linode allows "
                                f"{MAX_PORT_ENTRIES})")
        if len(rule.sources) > MAX_ADDRESSES:
            raise FirewallError(f"{role}: rule {rule.label} has {len(rule.sources)} addresses (Linode allows "
                                f"{MAX_ADDRESSES}); use fewer nodes or a subnet rule")
        addresses: dict[str, list[str]] = {"ipv4": list(rule.sources)}
        if rule.public:
            addresses["ipv6"] = list(ANYWHERE_V6)
        inbound.append({"action": "ACCEPT", "label": rule.label, "protocol": "TCP", "ports": rule.ports_text,
                        "addresses": addresses})
    if len(inbound) > MAX_RULES:
        raise FirewallError(f"{role}: {len(inbound)} rules (Linode allows {MAX_RULES})")
    return {
        "label": f"{stack.project}-{role}"[:32],
        "rules": {"inbound_policy": "DROP", "outbound_policy": "ACCEPT", "inbound": inbound, "outbound": []},
        "tags": [stack.project],
    }
