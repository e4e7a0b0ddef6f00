"""The demo app under Starman reaches the data tier through its HA paths only: the
multi-host DSN and Sentinel. It keeps working across a Redis and a PostgreSQL failover."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from datatier import (
    cleanup,
    loopback_stack,
    master_address,
    other_ca,
    psql,
    require_postgres,
    run_pg_failover,
    start_pg_tier,
    start_redis_tier,
    wait_until,
)

from conftest import require
from realserver import exec_start, free_port, wait_for_port

pytestmark = pytest.mark.realserver


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _call(url: str, data: bytes | None = None, cookie: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, data=data, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode().strip(), response.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode().strip(), ""


def _app_health(ls, env: dict[str, str]) -> str:
    """The Redis half of app.psgi's /healthz, run once in a fresh perl with ``env``."""
    call = ("my $app = Plack::Util::load_psgi(shift);"
            "print $app->({ PATH_INFO => '/healthz', REQUEST_METHOD => 'GET' })->[2][0]")
    out = subprocess.run(["perl", "-MPlack::Util", "-e", call, str(ls.repo / "app" / "app.psgi")], env=env,
                         capture_output=True, text=True, timeout=30)
    return next(part for part in out.stdout.split() if part.startswith("redis="))


def test_demo_app_survives_redis_and_postgres_failovers(record_property) -> None:
    version = require_postgres()
    require("starman", "redis-server", "redis-sentinel", "redis-cli")
    # Starman here (the default, Starlet, runs in the rehearsal and the load-balancer tests).
    ls = loopback_stack({"app_server": "starman", "pg_failover": "manual", "pg_version": version, "pg_replicas": 1, "redis_mode": "sentinel", "redis_replicas": 1,
                         "sentinel_count": 3, "app_servers": 1, "lb_count": 1, "lb_keepalive": 2})
    try:
        start_pg_tier(ls)
        procs = start_redis_tier(ls)
        app = ls.node("app1")
        (unit,) = Path(app.paths.root).glob("etc/systemd/system/*-app-*.service")
        argv = exec_start(unit.read_text())
        port = free_port(app.address)
        argv[argv.index("--listen") + 1] = f"{app.address}:{port}"
        argv[-1] = str(ls.repo / "app" / "app.psgi")
        env = {"PATH": os.environ["PATH"], **_env_file(Path(app.paths.app_conf_dir) / "app.env"),
               **_env_file(Path(app.paths.app_conf_dir) / "app-secrets.env")}
        assert "host=127.20.0.20,127.20.0.21" in env["PG_DSN"] and env["REDIS_SENTINELS"].count(":26379") == 3
        log = open(ls.base / "starman.log", "ab")
        ls.procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        wait_for_port(app.address, port)
        base = f"http://{app.address}:{port}"

        assert _call(f"{base}/healthz") == (200, "postgresql=ok redis=ok", "")
        status, item, _ = _call(f"{base}/items", b"first")
        assert status == 201
        wait_until(lambda: _call(f"{base}/items/{item}")[:2] == (200, "first"), 10, "the item on the read path")
        # DBD::Pg hands sslmode/sslrootcert to libpq with the multi-host list: every app
        # connection, to the primary and to the replica, is TLS verified against the stack CA.
        assert "sslmode=verify-full" in env["PG_DSN"] and "sslmode=verify-full" in env["PG_DSN_READ"]
        for db in ("db1", "db2"):
            assert psql(ls, db, "SELECT count(*) > 0 AND bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s "
                                f"USING (pid) WHERE a.usename = '{ls.stack.a.pg_app_user}'") == "t", db
        status, body, cookie = _call(f"{base}/session")
        assert (status, body) == (200, "visits=1")
        cookie = cookie.split(";")[0]
        assert _call(f"{base}/session", cookie=cookie)[:2] == (200, "visits=2")
        # Redis has no plaintext port, so those sessions went over TLS; the app checks the
        # certificates against the stack CA: trusting another CA, it reaches no Sentinel.
        assert env["REDIS_TLS_CA_FILE"] == app.paths.stack_ca_file
        assert _app_health(ls, env) == "redis=ok"
        assert _app_health(ls, {**env, "REDIS_TLS_CA_FILE": str(other_ca(ls.base))}) == "redis=down"

        # Redis: SIGKILL the master; sessions come back through Sentinel.
        killed = time.monotonic()
        os.killpg(procs["redis1"].pid, signal.SIGKILL)
        wait_until(lambda: master_address(ls) != ls.node("redis1").address, 30, "sentinel failover")
        wait_until(lambda: _call(f"{base}/session", cookie=cookie)[0] == 200, 30, "sessions to work again")
        redis_s = time.monotonic() - killed
        visits = _call(f"{base}/session", cookie=cookie)[1]
        assert int(visits.split("=")[1]) >= 4, "the session survived the failover"
        record_property("app_redis_recovery_s", round(redis_s, 2))

        # PostgreSQL: the generated manual failover; the app's DSN is unchanged.
        started = time.monotonic()
        failover = run_pg_failover(ls, "db2")
        assert failover.returncode == 0, failover.stderr
        status, new_item, _ = wait_until(lambda: (r := _call(f"{base}/items", b"second"))[0] == 201 and r, 30,
                                         "writes to resume")
        record_property("app_pg_recovery_s", round(time.monotonic() - started, 2))
        assert _call(f"{base}/items/{new_item}")[:2] == (200, "second")
        assert _call(f"{base}/items/{item}")[:2] == (200, "first"), "nothing committed before the failover is lost"
        assert _call(f"{base}/healthz") == (200, "postgresql=ok redis=ok", "")
        print(f"\napp: sessions back {redis_s:.2f} s after the Redis master was killed; "
              f"writes back {time.monotonic() - started:.2f} s after the PostgreSQL failover began")
    finally:
        cleanup(ls)
