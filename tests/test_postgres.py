"""The generated PostgreSQL tier on real servers: a primary and two replicas built with
the generated scripts, streaming, and a manual failover with the app's DSN unchanged."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from datatier import (
    LoopbackStack,
    as_postgres,
    cleanup,
    loopback_stack,
    node_script,
    require_postgres,
    run_pg_failover,
    start_pg,
    start_pg_tier,
    wait_until,
)

pytestmark = pytest.mark.realserver



def _psql(ls: LoopbackStack, node: str, sql: str) -> str:
    n = ls.node(node)
    out = subprocess.run(as_postgres(f"{n.paths.pg_bin}/psql", "-X", "-A", "-t", "-q", "-h", n.paths.pg_run_dir,
                                     "-p", "5432", "-d", "postgres", "-c", sql),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _app_conninfo(ls: LoopbackStack, key: str = "PG_DSN") -> str:
    env = dict(line.split("=", 1) for line in (Path(ls.node("app1").paths.app_conf_dir) / "app.env").read_text().splitlines()
               if line and not line.startswith("#"))
    secrets = dict(line.split("=", 1) for line in (ls.repo / "secrets" / "secrets.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    dsn = env[key].removeprefix("dbi:Pg:").replace(";", " ")
    return f"{dsn} user={env['PG_USER']} password={secrets['PG_APP_PASSWORD']}"


def _app_sql(ls: LoopbackStack, conninfo: str, sql: str) -> str:
    psql = f"{ls.node('db1').paths.pg_bin}/psql"
    out = subprocess.run([psql, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _rows_on(ls: LoopbackStack, node: str) -> str | None:
    """Row count of t on one node, or None while the node (or the table) is not there yet."""
    try:
        return _app_sql(ls, _replica_conninfo(ls, node), "SELECT count(*) FROM t")
    except AssertionError:
        return None


def _replica_conninfo(ls: LoopbackStack, node: str) -> str:
    conninfo = _app_conninfo(ls)
    hosts = next(part for part in conninfo.split() if part.startswith("host="))
    ports = next(part for part in conninfo.split() if part.startswith("port="))
    return (conninfo.replace(hosts, f"host={ls.node(node).address}").replace(ports, "port=5432")
            .replace("target_session_attrs=read-write", "target_session_attrs=any"))


@pytest.fixture(params=["async", "sync"])
def cluster(request: pytest.FixtureRequest):
    version = require_postgres()
    ls = loopback_stack({"pg_failover": "manual", "pg_version": version, "pg_replicas": 2, "pg_replication": request.param,
                         "app_servers": 1, "lb_count": 1, "lb_keepalive": 2,
                         "redis_mode": "single", "redis_replicas": 0})
    try:
        start_pg_tier(ls)
        yield ls, request.param
    finally:
        cleanup(ls)


def test_replicas_stream_and_failover_keeps_the_dsn(cluster, record_property) -> None:
    ls, mode = cluster
    expected_state = "quorum" if mode == "sync" else "async"
    rows = wait_until(lambda: _psql(ls, "db1", "SELECT application_name, state, sync_state FROM pg_stat_replication "
                                                "ORDER BY 1").splitlines() == [f"db2|streaming|{expected_state}",
                                                                                f"db3|streaming|{expected_state}"],
                      30, "both replicas to stream")
    assert rows

    # The bootstrap script is idempotent and will not touch a running server's data.
    again = node_script(ls, "db2", "pg-bootstrap-replica")
    assert again.returncode == 0 and "already runs as a replica" in again.stdout

    write = _app_conninfo(ls)
    _app_sql(ls, write, "CREATE TABLE IF NOT EXISTS t (id serial PRIMARY KEY, v text)")
    started = time.monotonic()
    _app_sql(ls, write, "INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 100) g")
    lags = {}
    for replica in ("db2", "db3"):
        wait_until(lambda r=replica: _rows_on(ls, r) == "100",
                   10, f"rows on {replica}", interval=0.01)
        lags[replica] = time.monotonic() - started
    record_property("replication_visible_after_s", {k: round(v, 3) for k, v in lags.items()})
    print(f"\n[{mode}] rows visible on replicas after: {lags}")
    with pytest.raises(AssertionError):  # replicas are read-only
        _app_sql(ls, _replica_conninfo(ls, "db2"), "INSERT INTO t (v) VALUES ('no')")
    assert _app_sql(ls, _app_conninfo(ls, "PG_DSN_READ"), "SELECT pg_is_in_recovery()") == "t"

    started = time.monotonic()
    failover = run_pg_failover(ls, "db2")
    failover_s = time.monotonic() - started
    assert failover.returncode == 0, failover.stderr
    record_property("pg_failover_s", round(failover_s, 2))
    print(f"[{mode}] manual failover took {failover_s:.2f} s")

    # Same DSN, new primary.
    assert _app_sql(ls, write, "INSERT INTO t (v) VALUES ('after failover') RETURNING inet_server_addr()") \
        == ls.node("db2").address
    assert _app_sql(ls, write, "SELECT count(*) FROM t") == "101"
    # db3 follows db2; the old primary is fenced: stopped, and read-only if ever started again.
    wait_until(lambda: _rows_on(ls, "db3") == "101", 30,
               "db3 to follow db2")
    old = Path(ls.node("db1").paths.pg_data)
    assert (old / "standby.signal").exists() and (old / "halgen.fenced").exists()
    assert subprocess.run(as_postgres(f"{ls.node('db1').paths.pg_bin}/pg_ctl", "status", "-D", str(old)),
                          capture_output=True).returncode == 3
    # A second failover to a node that is already primary is refused.
    again = run_pg_failover(ls, "db2")
    assert again.returncode == 1 and "not a replica" in again.stderr
    # The fenced old primary can be rebuilt as a replica of the new one.
    rebuilt = node_script(ls, "db1", "pg-bootstrap-replica", "db2")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    assert "moving the old data directory" in rebuilt.stdout
    start_pg(ls, "db1")
    wait_until(lambda: _rows_on(ls, "db1") == "101", 30,
               "db1 to follow db2")



@pytest.fixture()
def tls_pair():
    """A primary and one replica, as generated: TLS with the stack CA's certificates."""
    version = require_postgres()
    ls = loopback_stack({"pg_failover": "manual", "pg_version": version, "pg_replicas": 1, "app_servers": 1, "lb_count": 1,
                         "lb_keepalive": 2, "redis_mode": "single", "redis_replicas": 0})
    try:
        start_pg_tier(ls)
        yield ls
    finally:
        cleanup(ls)


def _connect(ls: LoopbackStack, conninfo: str) -> subprocess.CompletedProcess[str]:
    """psql as the app would connect (its role and password), from a network address."""
    secrets = dict(line.split("=", 1) for line in (ls.repo / "secrets" / "secrets.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    a = ls.stack.a
    return subprocess.run([f"{ls.node('db1').paths.pg_bin}/psql", "-X", "-A", "-t", "-q",
                           f"{conninfo} port=5432 dbname={a.pg_database} user={a.pg_app_user} connect_timeout=5",
                           "-c", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                          capture_output=True, text=True, timeout=30, env={"PGPASSWORD": secrets["PG_APP_PASSWORD"]})


def _other_ca(directory: Path) -> Path:
    """A CA that signed nothing of this stack: a client trusting only it must refuse the server."""
    cert = directory / "other-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=not the stack CA", "-keyout", str(directory / "other-ca.key"),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert


def test_postgres_speaks_verified_tls_only(tls_pair) -> None:
    ls = tls_pair
    db1 = ls.node("db1")
    ca = ls.node("app1").paths.stack_ca_file

    verified = _connect(ls, f"host={db1.address} sslmode=verify-full sslrootcert={ca}")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == "t|TLSv1.3"

    # Without TLS, pg_hba.conf has no line for a network client, whatever the password.
    plain = _connect(ls, f"host={db1.address} sslmode=disable")
    assert plain.returncode != 0
    assert "no pg_hba.conf entry" in plain.stderr and "no encryption" in plain.stderr, plain.stderr

    # A client trusting another CA refuses the server's certificate ...
    wrong_ca = _connect(ls, f"host={db1.address} sslmode=verify-full sslrootcert={_other_ca(ls.base)}")
    assert wrong_ca.returncode != 0 and "certificate verify failed" in wrong_ca.stderr, wrong_ca.stderr
    # ... and so does one reaching the node under a name its certificate does not carry.
    wrong_name = _connect(ls, f"host=db.invalid hostaddr={db1.address} sslmode=verify-full sslrootcert={ca}")
    assert wrong_name.returncode != 0 and "does not match host name" in wrong_name.stderr, wrong_name.stderr

    # The app's own DSN (as DBD::Pg hands it to libpq) goes over verified TLS.
    app = _app_sql(ls, _app_conninfo(ls), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert app == "t"


def test_replication_streams_over_verified_tls(tls_pair) -> None:
    ls = tls_pair
    rows = wait_until(lambda: _psql(ls, "db1", "SELECT r.application_name, s.ssl, s.version FROM pg_stat_replication r "
                                               "JOIN pg_stat_ssl s USING (pid)") or None, 30, "db2 to stream")
    assert rows == "db2|t|TLSv1.3"
    conninfo = _psql(ls, "db2", "SHOW primary_conninfo").replace("'", "")  # pg_basebackup quotes every value
    assert "sslmode=verify-full" in conninfo and f"sslrootcert={ls.node('db2').paths.stack_ca_file}" in conninfo

    # After a failover the repointed replicas keep verified TLS (pg-failover.sh writes the same settings).
    failover = run_pg_failover(ls, "db2")
    assert failover.returncode == 0, failover.stderr
    rebuilt = node_script(ls, "db1", "pg-bootstrap-replica", "db2")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    start_pg(ls, "db1")
    rows = wait_until(lambda: _psql(ls, "db2", "SELECT r.application_name, s.ssl FROM pg_stat_replication r "
                                               "JOIN pg_stat_ssl s USING (pid)") or None, 30, "db1 to stream from db2")
    assert rows == "db1|t"


def test_without_vpc_tls_postgres_speaks_plaintext_and_ships_no_certificate() -> None:
    """vpc_tls: false (for measuring what TLS costs) renders today's plaintext configs:
    host lines, sslmode=disable, and no certificate or CA in any node's files."""
    version = require_postgres()
    ls = loopback_stack({"pg_failover": "manual", "pg_version": version, "pg_replicas": 1, "app_servers": 1, "lb_count": 1,
                         "redis_mode": "single", "redis_replicas": 0, "vpc_tls": False})
    try:
        assert not list((ls.repo / "build" / "nodes").rglob("*.crt")), "certificates for a stack without TLS"
        start_pg_tier(ls)
        db1 = ls.node("db1")
        plain = _connect(ls, f"host={db1.address} sslmode=disable")
        assert plain.returncode == 0, plain.stderr
        assert plain.stdout.strip() == "f|"
        rows = wait_until(lambda: _psql(ls, "db1", "SELECT r.application_name, s.ssl FROM pg_stat_replication r "
                                                   "JOIN pg_stat_ssl s USING (pid)") or None, 30, "db2 to stream")
        assert rows == "db2|f"
        assert _app_sql(ls, _app_conninfo(ls), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "f"
    finally:
        cleanup(ls)
