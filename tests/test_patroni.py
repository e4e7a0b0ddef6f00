"""PostgreSQL under Patroni on real servers: the generated etcd and Patroni configs start
a cluster, backups run on whoever leads, a replica is made from the latest backup, and
scripts/pg-failover.sh hands over or refuses. (Failures themselves: the rehearsal's
drills, tests/test_rehearse.py.)"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from datatier import (
    LoopbackStack,
    cleanup,
    loopback_stack,
    node_script,
    require_postgres,
    run_pg_failover,
)
from halgen.rehearse import patroni

from conftest import require

pytestmark = pytest.mark.realserver


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LoopbackStack, dict[str, subprocess.Popen]]]:
    version = require_postgres()
    require("/usr/bin/patroni", "etcd", "etcdctl", "pgbackrest", "nginx", "openssl")
    ls = loopback_stack({"pg_version": version, "pg_replicas": 1, "redis_mode": "single", "redis_replicas": 0,
                         "app_servers": 1, "lb_count": 1, "lb_keepalive": 2})
    procs: dict[str, subprocess.Popen] = {}
    try:
        patroni.start_cluster(ls, procs)  # the setup's stanza step needs the bucket: it is there
        yield ls, procs
    finally:
        cleanup(ls)
        patroni.stop_leftovers(ls)


def test_the_cluster_has_one_primary_a_streaming_replica_and_etcd_quorum(cluster) -> None:
    ls, _ = cluster
    leader = patroni.wait_until_healthy(ls, 60)
    assert leader.name == "db1" and patroni.streaming(ls, leader) == {"db2"}
    for member in ls.stack.etcd_members:
        assert patroni.etcd_healthy(ls, member), member.name
    listing = patroni.patronictl(ls, leader, "list", "-f", "tsv")
    assert listing.returncode == 0, listing.stderr
    assert "Leader" in listing.stdout and "Replica" in listing.stdout


def test_backups_run_on_the_leader_only_and_a_new_replica_comes_from_the_backup(cluster) -> None:
    ls, procs = cluster
    leader = patroni.wait_until_healthy(ls, 60)
    replica = next(n for n in ls.stack.dbs if n != leader)
    full = node_script(ls, leader.name, "pg-backup", "full")
    assert full.returncode == 0, full.stderr[-800:]
    skipped = node_script(ls, replica.name, "pg-backup", "full")
    assert skipped.returncode == 0 and "not the primary" in skipped.stdout
    # The replica's disk is lost: Patroni makes it again, from the backup rather than the primary.
    ls.processes.stop(procs[replica.name])
    subprocess.run(["rm", "-rf", replica.paths.pg_data], check=True)
    procs[replica.name] = patroni.start_patroni(ls, replica)
    patroni.wait_until_healthy(ls, 180)
    log = ls.processes.log(f"patroni-{replica.name}").read_text(errors="replace")
    assert "replica has been created using pgbackrest" in log, log[-2000:]


def test_pg_failover_switches_over_and_refuses_what_would_lose_commits(cluster) -> None:
    ls, _ = cluster
    leader = patroni.wait_until_healthy(ls, 60)
    replica = next(n for n in ls.stack.dbs if n != leader)
    for args, says in ((["switchover", "db9"], "not a member"), (["switchover", leader.name], "primary already"),
                       (["failover"], "usage"), (["promote", replica.name], "usage")):
        refused = run_pg_failover(ls, *args)
        assert refused.returncode != 0 and says in refused.stderr, (args, refused.stderr)
    status = run_pg_failover(ls, "status")
    assert status.returncode == 0 and leader.name in status.stdout, status.stderr
    switched = run_pg_failover(ls, "switchover", replica.name)
    assert switched.returncode == 0, switched.stderr
    assert patroni.wait_until_healthy(ls, 90) == replica

