"""The derived model: IP plan, names, placement, prices."""

from __future__ import annotations

import ipaddress

import pytest

from halgen.compiler import schema
from halgen.compiler.answers import Answers
from halgen.compiler.model import exact_blocks, plan_addresses
from halgen.compiler.pipeline import stack_from


def _answers(**overrides: object) -> Answers:
    """Defaults with overrides, unvalidated: the planner must cope with what validation refuses."""
    return Answers.from_dict({**schema.defaults(), **overrides})


def test_default_plan_uses_role_blocks_and_skips_reserved() -> None:
    s = stack_from({})
    assert [n.address for n in s.lbs] == ["10.0.0.10", "10.0.0.11"]
    assert [n.address for n in s.apps] == ["10.0.0.40", "10.0.0.41", "10.0.0.42"]
    assert s.dbs[0].address == "10.0.0.20" and s.redis[0].address == "10.0.0.30"


def test_scaling_the_app_tier_moves_no_other_node() -> None:
    small = {n.name: n.address for n in stack_from({"app_servers": 2}).nodes}
    large = {n.name: n.address for n in stack_from({"app_servers": 200, "pg_max_connections": 1100}).nodes}
    assert all(large[name] == address for name, address in small.items())


def test_every_address_is_unique_inside_subnet_and_not_reserved() -> None:
    a = _answers(app_servers=214, pg_max_connections=1200)
    plan, overflow = plan_addresses(a)
    assert not overflow
    net = ipaddress.IPv4Network(a.vpc_subnet)
    reserved = {net.network_address, net.network_address + 1, net.broadcast_address, net.broadcast_address - 1}
    addresses = [ipaddress.IPv4Address(ip) for ip in plan.values()]
    assert len(set(addresses)) == len(addresses)
    assert all(ip in net and ip not in reserved for ip in addresses)


def test_subnet_overflow_is_reported() -> None:
    a = _answers(app_servers=215, pg_max_connections=1200)
    _, overflow = plan_addresses(a)
    assert overflow == ["app215"]


def test_fixed_address_is_skipped_by_the_planner() -> None:
    s = stack_from({"node_addresses": {"db1": "10.0.0.41"}})
    by_name = {n.name: n.address for n in s.nodes}
    assert by_name["db1"] == "10.0.0.41"
    assert by_name["app2"] == "10.0.0.42" and by_name["app3"] == "10.0.0.43"


def test_app_instances_and_weights() -> None:
    s = stack_from({"app_servers": 2, "app_instances": 3, "lb_weights": {"app2": 5}})
    assert [i.listen for i in s.apps[1].instances] == ["10.0.0.41:5000", "10.0.0.41:5001", "10.0.0.41:5002"]
    assert {i.weight for i in s.apps[1].instances} == {5}
    assert s.total_app_workers == 2 * 3 * 5


def test_sentinels_on_distinct_nodes_redis_first() -> None:
    s = stack_from({"sentinel_count": 5, "redis_replicas": 2})
    assert sorted(n.name for n in s.sentinels) == ["app1", "app2", "redis1", "redis2", "redis3"]


def test_no_sentinels_without_sentinel_mode() -> None:
    assert stack_from({"redis_mode": "replica"}).sentinels == ()


def test_prices_follow_catalogue_and_region() -> None:
    s = stack_from({})
    assert s.monthly_total == 195.0  # 183 + the monitoring node (g6-standard-1, $12)
    assert s.mons[0].monthly == 12.0 and stack_from({"monitoring": False}).monthly_total == 183.0
    jakarta = stack_from({"region": "id-cgk", "backup_endpoint": "id-cgk-1.linodeobjects.com"})
    assert jakarta.apps[0].monthly == 28.8
    assert s.prices_as_of == "2024-07"


@pytest.mark.parametrize(("addresses", "blocks"), [
    (["10.0.0.40", "10.0.0.41", "10.0.0.42"], ("10.0.0.40/31", "10.0.0.42/32")),
    (["10.0.0.42", "10.0.0.40", "10.0.0.41", "10.0.0.40"], ("10.0.0.40/31", "10.0.0.42/32")),  # order, repeats
    ([f"10.0.0.{i}" for i in range(40, 48)], ("10.0.0.40/29",)),
    (["10.0.0.9", "10.0.0.20"], ("10.0.0.9/32", "10.0.0.20/32")),
    ([], ()),
])
def test_exact_blocks_hold_the_addresses_and_nothing_else(addresses: list[str], blocks: tuple[str, ...]) -> None:
    assert exact_blocks(addresses) == blocks
    held = {str(a) for b in blocks for a in ipaddress.ip_network(b)}
    assert held == set(addresses)
