"""The generated Redis tier on real servers: a master, two replicas and three Sentinels;
SIGKILL the master and time until a replica is promoted and accepts writes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from datatier import cleanup, loopback_stack, master_address, redis_cli, start_redis_tier, wait_until

from conftest import require

pytestmark = pytest.mark.realserver


@pytest.fixture
def redis_tier():
    require("redis-server", "redis-sentinel", "redis-cli")
    ls = loopback_stack({"redis_mode": "sentinel", "redis_replicas": 2, "sentinel_count": 3,
                         "app_servers": 1, "lb_count": 1, "lb_keepalive": 2})
    try:
        procs = start_redis_tier(ls)
        yield ls, procs
    finally:
        cleanup(ls)


def test_sentinel_fails_over_within_10_seconds(redis_tier, record_property) -> None:
    ls, procs = redis_tier
    master = ls.node("redis1")
    assert master_address(ls) == master.address
    # min-replicas-to-write: the master takes writes once a replica is in sync.
    wait_until(lambda: redis_cli(ls, master.address, 6379, "SET", "session:1", "alice") == "OK", 15,
               "the master to accept writes")
    wait_until(lambda: redis_cli(ls, ls.node("redis2").address, 6379, "GET", "session:1") == "alice", 5,
               "the write to reach a replica")
    # Without the password nothing is served.
    out = subprocess.run(["redis-cli", "-h", master.address, "-p", "6379", "GET", "session:1"],
                         capture_output=True, text=True)
    assert "NOAUTH" in out.stdout + out.stderr

    killed = time.monotonic()
    os.killpg(procs["redis1"].pid, signal.SIGKILL)

    def promoted_and_writable() -> str | None:
        address = master_address(ls)
        if address and address != master.address and \
                redis_cli(ls, address, 6379, "SET", "session:2", "bob") == "OK":
            return address
        return None

    new_master = wait_until(promoted_and_writable, 30, "a replica to be promoted and accept writes", interval=0.1)
    seconds = time.monotonic() - killed
    record_property("redis_failover_s", round(seconds, 2))
    print(f"\nredis failover: {seconds:.2f} s to a writable master at {new_master}")
    assert seconds <= 10
    assert redis_cli(ls, new_master, 6379, "GET", "session:1") == "alice", "data written before the kill survives"


def test_single_redis_starts_from_generated_config() -> None:
    require("redis-server", "redis-cli")
    ls = loopback_stack({"redis_mode": "single", "redis_replicas": 0, "app_servers": 1, "lb_count": 1,
                         "lb_keepalive": 2, "redis_persistence": "rdb+aof", "redis_maxmemory_policy": "allkeys-lru"})
    try:
        node = ls.node("redis1")
        ls.spawn(["redis-server", f"{node.paths.redis_conf_dir}/redis.conf"], "redis1")
        wait_until(lambda: redis_cli(ls, node.address, 6379, "PING") == "PONG", 15, "redis")
        assert redis_cli(ls, node.address, 6379, "CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "allkeys-lru"
        assert redis_cli(ls, node.address, 6379, "CONFIG", "GET", "appendonly").splitlines()[1] == "yes"
        assert Path(node.paths.redis_data).is_dir()
    finally:
        cleanup(ls)
