"""The typed model of a stack, derived from complete, valid answers.

Everything a template needs that is not a plain answer is computed here
(node names, the IP plan, ports, sizing, prices), so templates stay dumb.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from . import resources

ROLES = ("lb", "app", "db", "redis")
ROLE_TITLES = {"lb": "nginx load balancer", "app": "Starman app server", "db": "PostgreSQL", "redis": "Redis"}
# Where each role's addresses start in the subnet (offset from the network address).
# Fixed blocks keep every other node's address stable when one tier scales.
ROLE_OFFSETS = {"lb": 10, "db": 20, "redis": 30, "app": 40}
RESERVED_HEAD = 2  # Linode: never use the first two ...
RESERVED_TAIL = 2  # ... or the last two addresses of a VPC subnet


@dataclass(frozen=True)
class Plan:
    type: str
    label: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    monthly: float


@dataclass(frozen=True)
class StarmanInstance:
    node: str
    index: int
    address: str
    port: int
    unit: str
    weight: int

    @property
    def listen(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    index: int
    hostname: str
    address: str
    plan: Plan
    monthly: float
    sentinel: bool = False
    instances: tuple[StarmanInstance, ...] = ()

    @property
    def role_title(self) -> str:
        if self.role == "db":
            return "PostgreSQL primary" if self.index == 1 else "PostgreSQL replica"
        if self.role == "redis":
            return "Redis master" if self.index == 1 else "Redis replica"
        return ROLE_TITLES[self.role]

    @property
    def services(self) -> tuple[str, ...]:
        base = {"lb": ("nginx",), "app": ("starman",), "db": ("postgresql",), "redis": ("redis-server",)}[self.role]
        return base + (("redis-sentinel",) if self.sentinel else ())


@dataclass(frozen=True)
class Paths:
    """Absolute paths on the nodes; one place, so a rehearsal can prefix them."""

    nginx_conf_dir: str
    nginx_log_dir: str
    run_dir: str
    app_root: str
    app_current: str
    letsencrypt_dir: str
    acme_root: str


@dataclass(frozen=True)
class Stack:
    a: dict[str, Any]  # the complete answers, defaults filled in
    project: str
    subnet: str
    nodes: tuple[Node, ...]
    paths: Paths
    prices_as_of: str
    object_storage_monthly: float
    backup_bucket: str
    halgen_version: str
    by_role: dict[str, tuple[Node, ...]] = field(default_factory=dict)

    @property
    def lbs(self) -> tuple[Node, ...]:
        return self.by_role["lb"]

    @property
    def apps(self) -> tuple[Node, ...]:
        return self.by_role["app"]

    @property
    def dbs(self) -> tuple[Node, ...]:
        return self.by_role["db"]

    @property
    def redis(self) -> tuple[Node, ...]:
        return self.by_role["redis"]

    @property
    def sentinels(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.sentinel)

    @property
    def instances(self) -> tuple[StarmanInstance, ...]:
        return tuple(i for n in self.apps for i in n.instances)

    @property
    def nginx_workers(self) -> int:
        return self.lbs[0].plan.vcpus

    @property
    def total_starman_workers(self) -> int:
        return len(self.instances) * self.a["starman_workers"]

    @property
    def monthly_total(self) -> float:
        return round(sum(n.monthly for n in self.nodes) + self.object_storage_monthly, 2)

    @property
    def canonical_domain(self) -> str:
        return self.a["domains"][0]


def node_names(a: dict[str, Any]) -> dict[str, list[str]]:
    """Node names by role, in order, for complete answers."""
    counts = {
        "lb": a["lb_count"],
        "app": a["app_servers"],
        "db": 1 + a["pg_replicas"],
        "redis": 1 + (a["redis_replicas"] if a["redis_mode"] != "single" else 0),
    }
    return {role: [f"{role}{i}" for i in range(1, counts[role] + 1)] for role in ROLES}


def plan_addresses(a: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Private address per node: fixed ones from the answers, the rest from each role's block.

    Returns the plan and the names that did not fit in the subnet.
    """
    net = ipaddress.IPv4Network(a["vpc_subnet"], strict=False)
    first, last = RESERVED_HEAD, net.num_addresses - 1 - RESERVED_TAIL
    fixed = dict(a["node_addresses"])
    used = {int(ipaddress.IPv4Address(ip)) - int(net.network_address) for ip in fixed.values()}
    plan: dict[str, str] = {}
    overflow: list[str] = []
    for role, names in node_names(a).items():
        offset = max(ROLE_OFFSETS[role], first)
        for name in names:
            if name in fixed:
                plan[name] = fixed[name]
                continue
            while offset in used:
                offset += 1
            if offset > last:
                overflow.append(name)
                continue
            used.add(offset)
            plan[name] = str(net.network_address + offset)
            offset += 1
    return plan, overflow


def sentinel_hosts(a: dict[str, Any]) -> list[str]:
    """Sentinels go on distinct nodes: every Redis node first, then app servers, then databases."""
    if a["redis_mode"] != "sentinel":
        return []
    names = node_names(a)
    candidates = names["redis"] + names["app"] + names["db"]
    return candidates[: a["sentinel_count"]]


def derive(a: dict[str, Any]) -> Stack:
    """Complete, valid answers -> Stack (cached: templates call it once per file)."""
    return _derive_cached(json.dumps(a, sort_keys=True))


@lru_cache(maxsize=16)
def _derive_cached(canonical: str) -> Stack:
    from . import __version__

    a = json.loads(canonical)
    catalogue = resources.price_catalogue()
    multiplier = catalogue["region_multipliers"].get(a["region"], 1.0)
    addresses, _ = plan_addresses(a)
    sentinels = set(sentinel_hosts(a))
    project = a["project"]
    by_role: dict[str, tuple[Node, ...]] = {}
    for role, names in node_names(a).items():
        plan_type = a[f"{role}_plan"]
        plan = Plan(type=plan_type, **catalogue["plans"][plan_type])
        nodes = []
        for index, name in enumerate(names, start=1):
            address = addresses[name]
            instances: tuple[StarmanInstance, ...] = ()
            if role == "app":
                weight = a["lb_weights"].get(name, 1)
                instances = tuple(
                    StarmanInstance(node=name, index=i, address=address, port=a["app_port"] + i,
                                    unit=f"{project}-starman-{a['app_port'] + i}", weight=weight)
                    for i in range(a["starman_instances"])
                )
            nodes.append(Node(
                name=name, role=role, index=index, hostname=f"{project}-{name}", address=address,
                plan=plan, monthly=round(plan.monthly * multiplier, 2),
                sentinel=name in sentinels, instances=instances,
            ))
        by_role[role] = tuple(nodes)
    app_root = f"/srv/{project}"
    return Stack(
        a=a,
        project=project,
        subnet=str(ipaddress.IPv4Network(a["vpc_subnet"], strict=False)),
        nodes=tuple(n for role in ROLES for n in by_role[role]),
        paths=Paths(
            nginx_conf_dir="/etc/nginx",
            nginx_log_dir="/var/log/nginx",
            run_dir="/run",
            app_root=app_root,
            app_current=f"{app_root}/current",
            letsencrypt_dir="/etc/letsencrypt",
            acme_root="/var/www/letsencrypt",
        ),
        prices_as_of=catalogue["as_of"],
        object_storage_monthly=catalogue["object_storage_monthly"],
        backup_bucket=a["backup_bucket"] or f"{project}-backups",
        halgen_version=__version__,
        by_role=by_role,
    )
