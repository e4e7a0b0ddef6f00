"""Unit tests of halgen.compiler.firewall: per-node inbound rules (the source of ufw) and
the Linode Cloud Firewall of each role, with Linode's limits.

Rule objects are only ever obtained from the module's functions (the rule class is
being renamed), and new ones are made with dataclasses.replace.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest

from halgen.compiler import firewall, pipeline
from halgen.compiler.model import Node, Stack

# Answer variants that move services around: TLS, one LB, Redis without Sentinel,
# Sentinels spilling onto app and DB nodes, several app server instances per app server.
VARIANTS = {
    "defaults": {},
    "tls-one-lb": {"lb_tls": True, "lb_count": 1},
    "redis-single": {"redis_mode": "single", "redis_replicas": 0},
    "redis-replica": {"redis_mode": "replica", "redis_replicas": 2},
    "sentinels-on-apps": {"sentinel_count": 5},
    "sentinels-on-dbs": {"sentinel_count": 7, "app_servers": 2, "pg_replicas": 3},
    "four-instances": {"app_servers": 2, "app_instances": 4},
    "no-pg-replica": {"pg_replicas": 0},
}
variants = pytest.mark.parametrize("answers", list(VARIANTS.values()), ids=list(VARIANTS))


def _stack(**answers: Any) -> Stack:
    return pipeline.stack_from(answers)


def _rules(stack: Stack, node: Node) -> dict[str, Any]:
    rules = firewall.node_rules(stack, node)
    by_label = {r.label: r for r in rules}
    assert len(by_label) == len(rules), "labels are unique per node"
    return by_label


def _hosts(*groups: tuple[Node, ...]) -> set[str]:
    return {n.address for group in groups for n in group}


def _addresses(sources: tuple[str, ...]) -> set[str]:
    """Every address the CIDR blocks hold (a /31 holds two)."""
    return {str(a) for s in sources for a in ipaddress.ip_network(s)}


def _node(stack: Stack, name: str) -> Node:
    return next(n for n in stack.nodes if n.name == name)


# --- per-node rules -----------------------------------------------------------------------

@pytest.mark.parametrize("admin_cidrs", [["203.0.113.0/24"], ["198.51.100.7/32", "10.8.0.0/16"]])
def test_ssh_is_open_only_to_admin_cidrs_on_every_node(admin_cidrs: list[str]) -> None:
    stack = _stack(admin_cidrs=admin_cidrs)
    for node in stack.nodes:
        ssh = [r for r in firewall.node_rules(stack, node) if 22 in r.ports]
        assert [(r.label, r.ports, r.sources, r.public) for r in ssh] == [
            ("ssh-admins", (22,), tuple(admin_cidrs), False)]


@pytest.mark.parametrize(("lb_tls", "ports"), [(False, (80,)), (True, (80, 443))])
def test_load_balancers_serve_the_world_and_443_only_with_tls(lb_tls: bool, ports: tuple[int, ...]) -> None:
    stack = _stack(lb_tls=lb_tls)
    for lb in stack.lbs:
        web = _rules(stack, lb)["web-public"]
        assert (web.ports, web.sources, web.public) == (ports, ("0.0.0.0/0",), True)


@variants
def test_only_load_balancers_have_public_rules(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for node in stack.nodes:
        public = [r.label for r in firewall.node_rules(stack, node) if r.public or "0.0.0.0/0" in r.sources]
        assert public == (["web-public"] if node.role == "lb" else [])


@pytest.mark.parametrize(("instances", "ports"), [(1, (5000,)), (3, (5000, 5001, 5002))])
def test_app_ports_from_app_port_admit_only_the_load_balancers(instances: int, ports: tuple[int, ...]) -> None:
    stack = _stack(app_instances=instances)
    for app in stack.apps:
        rule = _rules(stack, app)["app-from-lbs"]
        assert rule.ports == ports
        assert rule.sources == ("10.0.0.10/31",)


@pytest.mark.parametrize("answers", [{}, {"pg_replicas": 0, "app_servers": 1}, {"pg_replicas": 3}])
def test_postgres_admits_app_servers_and_database_peers_only(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for db in stack.dbs:
        rule = _rules(stack, db)["postgres-peers"]
        assert rule.ports == (5432,)
        assert _addresses(rule.sources) == _hosts(stack.apps, stack.dbs)


def test_postgres_sources_concretely_for_the_default_stack() -> None:
    stack = _stack()
    # db1-db2 are .20-.21 and app1-app3 .40-.42: the fewest blocks that hold exactly them.
    assert _rules(stack, stack.dbs[0])["postgres-peers"].sources == ("10.0.0.20/31", "10.0.0.40/31", "10.0.0.42/32")


@variants
def test_redis_admits_app_servers_redis_peers_and_sentinels(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for node in stack.redis:
        rule = _rules(stack, node)["redis-peers"]
        assert rule.ports == (6379,)
        assert _addresses(rule.sources) == _hosts(stack.apps, stack.redis, stack.sentinels)


@variants
def test_sentinel_port_only_on_sentinel_nodes_from_apps_sentinels_and_monitoring(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for node in stack.nodes:
        rule = _rules(stack, node).get("sentinel-peers")
        if not node.sentinel:
            assert rule is None, node.name
            continue
        assert rule.ports == (26379,)
        assert _addresses(rule.sources) == _hosts(stack.apps, stack.sentinels, stack.mons)


@pytest.mark.parametrize("redis_mode", ["single", "replica"])
def test_no_sentinel_port_anywhere_without_sentinel_mode(redis_mode: str) -> None:
    stack = _stack(redis_mode=redis_mode, redis_replicas=0 if redis_mode == "single" else 1)
    assert all(26379 not in r.ports for n in stack.nodes for r in firewall.node_rules(stack, n))


@variants
def test_a_node_opens_only_ssh_and_the_ports_of_its_own_services(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for node in stack.nodes:
        service_ports = {
            "nginx": {80, 443} if stack.a.lb_tls else {80},
            "haproxy": set(),  # on the loopback address only: nginx on the same node is its one client
            "postgresql": {5432},
            "patroni": {5432, 8008},  # PostgreSQL and Patroni's REST API
            "etcd": {2379, 2380},
            "redis-server": {6379},
            "redis-sentinel": {26379},
            **{i.unit: {i.port} for i in node.instances},  # the app server units
            "prometheus-node-exporter": {9100}, "prometheus-nginx-exporter": {9113}, "mtail": {3903},
            # the monitoring node's own (node_exporter too): on its loopback only
            **{unit: set() for unit in node.exporters if node.role == "mon"},
        }
        expected = {22}.union(*(service_ports[s] for s in node.services))
        opened = {p for r in firewall.node_rules(stack, node) for p in r.ports}
        assert opened == expected, node.name


def test_patroni_and_etcd_ports_admit_only_their_peers() -> None:
    stack = _stack(pg_replicas=2, etcd_count=5)
    members = sorted(n.name for n in stack.etcd_members)
    assert members == ["app1", "app2", "db1", "db2", "db3"]
    for node in stack.nodes:
        rules = _rules(stack, node)
        if node.role == "db":
            assert _addresses(rules["patroni-peers"].sources) == _hosts(stack.dbs)
        else:
            assert "patroni-peers" not in rules
        if node.etcd:
            assert _addresses(rules["etcd-peers"].sources) == _hosts(stack.etcd_members)
            assert _addresses(rules["etcd-clients"].sources) == _hosts(stack.dbs, stack.etcd_members)
        else:
            assert "etcd-peers" not in rules and "etcd-clients" not in rules


def test_manual_failover_opens_no_patroni_or_etcd_port() -> None:
    stack = _stack(pg_failover="manual")
    assert not stack.etcd_members
    assert all(not {8008, 2379, 2380} & set(r.ports) for n in stack.nodes for r in firewall.node_rules(stack, n))


def test_private_sources_are_exact_blocks_in_numeric_order() -> None:
    # app1 pinned to .9: a text sort would put 10.0.0.9 after 10.0.0.42.
    stack = _stack(node_addresses={"app1": "10.0.0.9"})
    sources = _rules(stack, stack.dbs[0])["postgres-peers"].sources
    assert sources == ("10.0.0.9/32", "10.0.0.20/31", "10.0.0.40/31")


def test_250_app_servers_need_a_handful_of_blocks() -> None:
    stack = _stack(**BIG, pg_replicas=4)
    sources = _rules(stack, stack.dbs[0])["postgres-peers"].sources
    assert len(sources) <= 8 and _addresses(sources) == _hosts(stack.apps, stack.dbs)


@variants
def test_rule_labels_fit_linode(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for node in stack.nodes:
        for rule in firewall.node_rules(stack, node):
            assert 3 <= len(rule.label) <= 32 and rule.label.replace("-", "").replace("_", "").isalnum()


# --- one Cloud Firewall per role ----------------------------------------------------------

@variants
def test_role_rules_are_the_union_of_the_roles_node_rules(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for role in stack.roles:
        union: dict[tuple[str, tuple[int, ...], bool], set[str]] = {}
        for node in stack.by_role[role]:
            for r in firewall.node_rules(stack, node):
                union.setdefault((r.label, r.ports, r.public), set()).update(r.sources)
        merged = {(r.label, r.ports, r.public): set(r.sources) for r in firewall.role_rules(stack, role)}
        assert merged == union, role


def test_sentinel_on_some_app_nodes_opens_it_in_the_app_cloud_firewall() -> None:
    stack = _stack()  # sentinels: redis1, redis2, app1; etcd: db1, db2, app1
    labels = [r.label for r in firewall.role_rules(stack, "app")]
    assert labels == ["ssh-admins", "app-from-lbs", "sentinel-peers", "etcd-clients", "etcd-peers", "monitoring",
                      "app-probes"]
    assert [r.label for r in firewall.node_rules(stack, _node(stack, "app2"))] == ["ssh-admins", "app-from-lbs",
                                                                                 "monitoring", "app-probes"]


@variants
def test_cloud_firewall_drops_by_default_and_accepts_the_role_rules_over_tcp(answers: dict[str, Any]) -> None:
    stack = _stack(**answers)
    for role in stack.roles:
        doc = firewall.cloud_firewall(stack, role)
        assert doc["rules"]["inbound_policy"] == "DROP"
        assert (doc["rules"]["outbound_policy"], doc["rules"]["outbound"]) == ("ACCEPT", [])
        expected = [(r.label, ",".join(map(str, r.ports)), list(r.sources)) for r in firewall.role_rules(stack, role)]
        got = [(i["label"], i["ports"], i["addresses"]["ipv4"]) for i in doc["rules"]["inbound"]]
        assert got == expected
        assert {(i["action"], i["protocol"]) for i in doc["rules"]["inbound"]} == {("ACCEPT", "TCP")}


def test_cloud_firewall_opens_ipv6_only_for_the_public_web_rule() -> None:
    stack = _stack(lb_tls=True)
    v6 = {(role, i["label"]): i["addresses"].get("ipv6")
          for role in stack.roles for i in firewall.cloud_firewall(stack, role)["rules"]["inbound"]}
    assert v6.pop(("lb", "web-public")) == ["::/0"]
    assert set(v6.values()) == {None}


def test_cloud_firewall_ports_text_lists_every_app_port() -> None:
    stack = _stack(app_servers=2, app_instances=3)
    inbound = {i["label"]: i for i in firewall.cloud_firewall(stack, "app")["rules"]["inbound"]}
    assert inbound["app-from-lbs"]["ports"] == "5000,5001,5002"


@pytest.mark.parametrize("project", ["shop", "a" * 24])
def test_cloud_firewall_is_labelled_and_tagged_with_the_project(project: str) -> None:
    doc = firewall.cloud_firewall(_stack(project=project), "redis")
    assert (doc["label"], doc["tags"]) == (f"{project}-redis", [project])
    assert len(doc["label"]) <= 32


class _InsertionOrderSet:
    """A stand-in for set() that iterates in insertion order, to make iteration order visible."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def update(self, items: Any) -> None:
        self._items.update(dict.fromkeys(items))

    def __iter__(self) -> Any:
        return iter(self._items)


# Regression: sources were sorted by address only, so 203.0.113.0/24 and /25 kept set
# iteration order, which changes with PYTHONHASHSEED (firewalls/lb.json differed between runs).
def test_role_sources_order_does_not_depend_on_set_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firewall, "set", _InsertionOrderSet, raising=False)
    orders = []
    for cidrs in (["203.0.113.0/24", "203.0.113.0/25"], ["203.0.113.0/25", "203.0.113.0/24"]):
        stack = _stack(admin_cidrs=cidrs)
        orders.append(next(r.sources for r in firewall.role_rules(stack, "lb") if r.label == "ssh-admins"))
    assert orders[0] == orders[1]


# --- Linode's limits ----------------------------------------------------------------------

def test_limits_are_linodes() -> None:
    assert (firewall.MAX_RULES, firewall.MAX_PORT_ENTRIES, firewall.MAX_ADDRESSES) == (25, 15, 255)


BIG = {"vpc_subnet": "10.0.0.0/16", "app_servers": 250, "pg_max_connections": 1300}


def _scattered(pg_replicas: int) -> Stack:
    """250 app servers and 1 + pg_replicas DB nodes no two of which share a block (10.0.0.1, 10.0.1.101, 10.0.1.1, ...)."""
    stack = _stack(**BIG, pg_replicas=pg_replicas)
    moved = {n: dataclasses.replace(n, address=f"10.0.{(i + 1) // 2}.{1 + 100 * (i % 2)}") for i, n in enumerate(stack.apps + stack.dbs)}
    return dataclasses.replace(stack, by_role={role: tuple(moved.get(n, n) for n in nodes)
                                               for role, nodes in stack.by_role.items()},
                               nodes=tuple(moved.get(n, n) for n in stack.nodes))


def test_postgres_rule_at_255_addresses_is_accepted() -> None:
    stack = _scattered(pg_replicas=4)  # 250 app servers + 5 DB nodes, one block each
    inbound = {i["label"]: i for i in firewall.cloud_firewall(stack, "db")["rules"]["inbound"]}
    assert len(inbound["postgres-peers"]["addresses"]["ipv4"]) == 255


def test_postgres_rule_over_255_addresses_raises() -> None:
    with pytest.raises(firewall.FirewallError, match=r"db: rule postgres-peers has 256 addresses"):
        firewall.cloud_firewall(_scattered(pg_replicas=5), "db")


def _one_app_with_ports(count: int) -> Stack:
    stack = _stack(app_servers=1)
    app = stack.apps[0]
    base = app.instances[0]
    fat = dataclasses.replace(app, instances=tuple(
        dataclasses.replace(base, index=i, port=5000 + i) for i in range(count)))
    return dataclasses.replace(stack, by_role={**stack.by_role, "app": (fat,)},
                               nodes=tuple(fat if n is app else n for n in stack.nodes))


def test_rule_with_15_ports_is_accepted() -> None:
    inbound = firewall.cloud_firewall(_one_app_with_ports(15), "app")["rules"]["inbound"]
    assert next(i for i in inbound if i["label"] == "app-from-lbs")["ports"].count(",") == 14


def test_rule_with_16_ports_raises() -> None:
    with pytest.raises(firewall.FirewallError, match=r"app: rule app-from-lbs has 16 port entries"):
        firewall.cloud_firewall(_one_app_with_ports(16), "app")


@pytest.mark.parametrize(("count", "raises"), [(25, False), (26, True)])
def test_more_than_25_rules_raises(monkeypatch: pytest.MonkeyPatch, count: int, raises: bool) -> None:
    stack = _stack()
    template = firewall.node_rules(stack, stack.lbs[0])[0]
    many = [dataclasses.replace(template, label=f"rule-{i:02d}", ports=(1000 + i,)) for i in range(count)]
    monkeypatch.setattr(firewall, "node_rules", lambda _stack, _node: many)
    if raises:
        with pytest.raises(firewall.FirewallError, match=rf"lb: {count} rules \(Linode allows 25\)"):
            firewall.cloud_firewall(stack, "lb")
    else:
        assert len(firewall.cloud_firewall(stack, "lb")["rules"]["inbound"]) == count
