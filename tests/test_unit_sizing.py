"""Unit tests of halgen.compiler.sizing: pgtune's web profile and Redis maxmemory.

Every expected number below is worked out by hand from the formulas in sizing.py
and the plan catalogue (compiler/data/linode_prices.json), so a change to either
shows here as a concrete value rather than as a golden-snapshot diff.
"""

from __future__ import annotations

import pytest

from halgen.compiler import pipeline, sizing
from halgen.compiler.resources import price_catalogue

MB = 1024  # kB per MB


def _pg(**answers: object) -> dict[str, str]:
    return pipeline.stack_from(answers).pg


def _mb(value: str) -> int:
    assert value.endswith("MB"), value
    return int(value.removesuffix("MB"))


def _kb(value: str) -> int:
    assert value.endswith("kB"), value
    return int(value.removesuffix("kB"))


PLANS_BY_RAM = sorted(price_catalogue()["plans"], key=lambda t: price_catalogue()["plans"][t]["ram_mb"])


# --- PostgreSQL: memory ---------------------------------------------------------------------

# db_plan: (RAM MB, vCPUs, disk GB) -> shared_buffers = RAM/4, effective_cache_size = 3*RAM/4,
# maintenance_work_mem = min(RAM/16, 2048), with the default pg_max_connections = 200.
@pytest.mark.parametrize(("db_plan", "shared", "cache", "maintenance"), [
    ("g6-nanode-1", "256MB", "768MB", "64MB"),          # 1024 MB
    ("g6-standard-4", "2048MB", "6144MB", "512MB"),     # 8192 MB
    ("g6-dedicated-16", "8192MB", "24576MB", "2048MB"),  # 32768 MB: RAM/16 is exactly the cap
    ("g7-highmem-2", "12288MB", "36864MB", "2048MB"),   # 49152 MB: RAM/16 = 3072, capped
])
def test_memory_settings_are_quarters_and_sixteenth_of_ram(db_plan: str, shared: str, cache: str,
                                                          maintenance: str) -> None:
    pg = _pg(db_plan=db_plan)
    assert (pg["shared_buffers"], pg["effective_cache_size"], pg["maintenance_work_mem"]) == (shared, cache, maintenance)


# work_mem = (RAM_kB - RAM_kB/4) / ((max_connections + max(8, vCPUs)) * 3), floored, at least 64kB.
@pytest.mark.parametrize(("db_plan", "max_connections", "work_mem"), [
    ("g6-nanode-1", 200, "1260kB"),       # 786432 / 624 = 1260.3
    ("g6-standard-4", 200, "10082kB"),    # 6291456 / 624 = 10082.5
    ("g6-dedicated-16", 200, "38836kB"),  # 25165824 / ((200 + 16) * 3 = 648) = 38836.1: 16 vCPUs > 8 workers
    ("g7-highmem-2", 200, "60494kB"),     # 37748736 / 624 = 60494.8
    ("g6-standard-4", 1000, "2080kB"),    # 6291456 / ((1000 + 8) * 3 = 3024) = 2080.5
])
def test_work_mem_shares_what_shared_buffers_leave(db_plan: str, max_connections: int, work_mem: str) -> None:
    assert _pg(db_plan=db_plan, pg_max_connections=max_connections)["work_mem"] == work_mem


def test_work_mem_never_below_postgres_minimum_of_64kb() -> None:
    # 786432 kB / ((5000 + 8) * 3) = 52.3 kB: below PostgreSQL's minimum, so 64kB.
    assert _pg(db_plan="g6-nanode-1", pg_max_connections=5000)["work_mem"] == "64kB"


def test_work_mem_shrinks_as_connections_grow() -> None:
    sizes = [_kb(_pg(pg_max_connections=n)["work_mem"]) for n in (50, 200, 800, 3200)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


# wal_buffers = 3% of shared_buffers in kB, capped at 16MB.
@pytest.mark.parametrize(("db_plan", "wal_buffers"), [
    ("g6-nanode-1", "7864kB"),     # 256 MB * 0.03 * 1024 = 7864.3
    ("g6-standard-1", "15728kB"),  # 512 MB * 0.03 * 1024 = 15728.6
    ("g6-standard-2", "16384kB"),  # 1024 MB * 0.03 * 1024 = 31457.3, capped
    ("g7-highmem-2", "16384kB"),
])
def test_wal_buffers_is_three_percent_of_shared_buffers_up_to_16mb(db_plan: str, wal_buffers: str) -> None:
    assert _pg(db_plan=db_plan)["wal_buffers"] == wal_buffers


@pytest.mark.parametrize("db_plan", PLANS_BY_RAM)
def test_sized_memory_fits_the_plan(db_plan: str) -> None:
    ram_mb = price_catalogue()["plans"][db_plan]["ram_mb"]
    pg = _pg(db_plan=db_plan)
    shared = _mb(pg["shared_buffers"])
    assert shared <= 0.4 * ram_mb  # lint HAL406's bound
    assert shared + _mb(pg["effective_cache_size"]) <= ram_mb
    assert _mb(pg["maintenance_work_mem"]) <= 2048
    # Three work_mem per connection and worker fit in what shared_buffers leave.
    slots = (200 + int(pg["max_worker_processes"])) * 3
    assert _kb(pg["work_mem"]) * slots <= (ram_mb - shared) * MB


@pytest.mark.parametrize("setting", ["shared_buffers", "effective_cache_size", "maintenance_work_mem"])
def test_memory_settings_never_shrink_as_ram_grows(setting: str) -> None:
    sizes = [_mb(_pg(db_plan=plan)[setting]) for plan in PLANS_BY_RAM]
    assert sizes == sorted(sizes)


# --- PostgreSQL: CPU, disk, constants -------------------------------------------------------

@pytest.mark.parametrize(("db_plan", "workers", "parallel", "per_gather", "maintenance"), [
    ("g6-nanode-1", "8", "1", "1", "1"),       # 1 vCPU: PostgreSQL's default 8 worker processes stay
    ("g6-standard-4", "8", "4", "2", "2"),     # 4 vCPUs: ceil(4/2) = 2
    ("g6-standard-6", "8", "6", "3", "3"),     # 6 vCPUs: ceil(6/2) = 3
    ("g6-dedicated-16", "16", "16", "4", "4"),  # 16 vCPUs: workers follow, per-gather capped at 4
])
def test_parallel_workers_follow_vcpus(db_plan: str, workers: str, parallel: str, per_gather: str,
                                       maintenance: str) -> None:
    pg = _pg(db_plan=db_plan)
    assert (pg["max_worker_processes"], pg["max_parallel_workers"], pg["max_parallel_workers_per_gather"],
            pg["max_parallel_maintenance_workers"]) == (workers, parallel, per_gather, maintenance)
    assert int(pg["max_parallel_workers"]) <= int(pg["max_worker_processes"])


@pytest.mark.parametrize(("db_plan", "huge_pages"), [
    ("g6-standard-6", "off"),    # 16 GB
    ("g7-highmem-1", "off"),     # 24 GB
    ("g6-standard-8", "try"),    # 32 GB: the threshold itself
    ("g7-highmem-2", "try"),     # 48 GB
])
def test_huge_pages_tried_from_32gb(db_plan: str, huge_pages: str) -> None:
    assert _pg(db_plan=db_plan)["huge_pages"] == huge_pages


@pytest.mark.parametrize(("db_plan", "keep"), [
    ("g6-nanode-1", "5120MB"),      # 25 GB disk / 5
    ("g7-highmem-1", "4096MB"),     # 20 GB disk / 5: the smallest disk
    ("g6-dedicated-16", "131072MB"),  # 640 GB disk / 5
])
def test_slot_wal_keep_size_is_a_fifth_of_the_disk(db_plan: str, keep: str) -> None:
    assert _pg(db_plan=db_plan)["max_slot_wal_keep_size"] == keep


def test_wal_and_planner_constants_do_not_depend_on_the_plan() -> None:
    expected = {"min_wal_size": "1GB", "max_wal_size": "4GB", "checkpoint_completion_target": "0.9",
                "default_statistics_target": "100", "random_page_cost": "1.1", "effective_io_concurrency": "200"}
    for plan in ("g6-nanode-1", "g7-highmem-2"):
        pg = _pg(db_plan=plan)
        assert {k: pg[k] for k in expected} == expected


# --- PostgreSQL: answers and the stack ------------------------------------------------------

def test_stack_sizes_postgres_from_the_db_plan_only() -> None:
    stack = pipeline.stack_from({"db_plan": "g6-standard-4", "app_plan": "g7-highmem-2", "redis_plan": "g6-nanode-1",
                                 "pg_max_connections": 300})
    assert stack.pg == sizing.pg_settings(sizing.PgInputs(ram_mb=8192, vcpus=4, disk_gb=160, max_connections=300), {})


def test_pg_settings_overrides_win_and_are_rendered_as_text() -> None:
    pg = _pg(pg_settings={"work_mem": "32MB", "max_parallel_workers": 2, "jit": "off"})
    assert (pg["work_mem"], pg["max_parallel_workers"], pg["jit"]) == ("32MB", "2", "off")
    assert pg["shared_buffers"] == "1024MB"  # the default db plan (4 GB) is still sized


def test_sized_settings_are_never_ones_halgen_manages() -> None:
    sized = {name for name, _ in sizing.PG_WEB_PROFILE}
    assert not sized & sizing.PG_MANAGED


# --- Redis ---------------------------------------------------------------------------------

# maxmemory = 70% of RAM without persistence, 50% when saving forks Redis (copy-on-write headroom).
@pytest.mark.parametrize(("redis_plan", "persistence", "maxmemory_mb"), [
    ("g6-nanode-1", "aof", 512),        # 1024 * 0.5
    ("g6-nanode-1", "none", 716),       # 1024 * 0.7 = 716.8
    ("g6-standard-1", "rdb", 1024),     # 2048 * 0.5
    ("g6-standard-1", "none", 1433),    # 2048 * 0.7 = 1433.6
    ("g6-standard-6", "rdb+aof", 8192),  # 16384 * 0.5
    ("g7-highmem-2", "none", 34406),    # 49152 * 0.7 = 34406.4
])
def test_redis_maxmemory_is_a_share_of_the_redis_plan(redis_plan: str, persistence: str, maxmemory_mb: int) -> None:
    stack = pipeline.stack_from({"redis_plan": redis_plan, "redis_persistence": persistence})
    assert stack.redis_maxmemory_mb == maxmemory_mb


@pytest.mark.parametrize("persistence", ["none", "rdb", "aof", "rdb+aof"])
def test_redis_maxmemory_leaves_headroom_and_grows_with_ram(persistence: str) -> None:
    rams = sorted({p["ram_mb"] for p in price_catalogue()["plans"].values()})
    sizes = [sizing.redis_maxmemory_mb(ram, persistence) for ram in rams]
    assert all(0 < size <= 0.75 * ram for size, ram in zip(sizes, rams, strict=True))  # lint HAL407's bound
    assert sizes == sorted(sizes)


def test_persistence_leaves_more_room_for_a_fork_than_none() -> None:
    assert sizing.redis_maxmemory_mb(4096, "none") > sizing.redis_maxmemory_mb(4096, "aof")
