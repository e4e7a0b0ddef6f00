"""Converting a running stack of the previous blueprint (pg_failover: manual) to Patroni,
as halgen's README says, without a dump and restore. Its own module: it needs the test
addresses that tests/test_patroni.py's cluster holds while that module runs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from datatier import (
    LoopbackStack,
    cleanup,
    loopback_stack,
    node_script,
    psql,
    require_postgres,
    run_pg_failover,
    start_pg_tier,
)
from halgen.compiler import pipeline
from halgen.compiler.loader import from_mapping
from halgen.compiler.model import derive
from halgen.compiler.write import build, render
from halgen.rehearse import patroni
from halgen.rehearse.layout import install_nodes

from conftest import require

pytestmark = pytest.mark.realserver


def test_a_running_manual_pair_converts_to_patroni_without_a_dump() -> None:
    """README, Converting to Patroni: the previous blueprint's primary and replica, with data,
    are stopped and started again under Patroni with the new files: the same data directory
    becomes the cluster, the replica follows, and the setup script adds pg_rewind's role."""
    version = require_postgres()
    require("/usr/bin/patroni", "etcd", "etcdctl", "pgbackrest", "nginx", "openssl")
    before = {"pg_failover": "manual", "pg_version": version, "pg_replicas": 1, "redis_mode": "single",
              "redis_replicas": 0, "app_servers": 1, "lb_count": 1, "lb_keepalive": 2}
    ls = loopback_stack(before)
    converted: LoopbackStack | None = None
    try:
        start_pg_tier(ls)
        psql(ls, "db1", "CREATE TABLE kept AS SELECT generate_series(1, 1000) AS id", database="app")
        # copier update with pg_failover: patroni, halgen build: the same secrets and certificates.
        answers = pipeline.complete_answers(from_mapping({**before, "pg_failover": "patroni"}))
        target = ls.stack.target
        repo = ls.base / "repo-patroni"
        render(answers, repo, target=target)
        shutil.rmtree(repo / "secrets")
        shutil.copytree(ls.repo / "secrets", repo / "secrets")
        build(repo, answers, target)
        stack = derive(answers, target)
        # Replicas first, then the primary: stop PostgreSQL, put the node's new files in place.
        for name in ("db2", "db1"):
            ls.processes.stop(next(p for p in ls.procs if ls.processes.names.get(p.pid) == name))
        install_nodes(repo, stack)
        converted = LoopbackStack(base=ls.base, repo=repo, stack=stack)
        procs: dict[str, subprocess.Popen] = dict(patroni.start_etcd_cluster(converted))
        db1, db2 = stack.dbs
        procs["db1"] = patroni.start_patroni(converted, db1)
        assert patroni.wait_for_leader(converted, 90, [db1]) == db1, "the old primary adopts its data and leads"
        procs["db2"] = patroni.start_patroni(converted, db2)
        assert patroni.wait_until_healthy(converted, 120) == db1
        setup = node_script(converted, "db1", "pg-setup-primary")
        assert setup.returncode == 0, setup.stderr[-800:]
        assert psql(converted, "db1", "SELECT count(*) FROM kept", database="app") == "1000"
        assert psql(converted, "db2", "SELECT count(*) FROM kept", database="app") == "1000"
        assert psql(converted, "db1", "SELECT count(*) FROM pg_roles WHERE rolname = 'rewinder'") == "1"
        # ... and it now fails over: a switchover there and back, rows intact.
        for to in ("db2", "db1"):
            switched = run_pg_failover(converted, "switchover", to)
            assert switched.returncode == 0, switched.stderr[-800:]
            assert patroni.wait_until_healthy(converted, 120).name == to
        assert psql(converted, "db2", "SELECT count(*) FROM kept", database="app") == "1000"
    finally:
        if converted is not None:
            converted.stop_all()
            patroni.stop_leftovers(converted)
        cleanup(ls)
