"""``halgen rehearse`` end to end: the whole stack started from a generated repo on
loopback, every drill against its target, the benchmark's figures, and nothing left
behind, also after Ctrl-C. Plus --check, usage errors and the seed config's substitutions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from datatier import installed_pg_version, require_postgres
from halgen.rehearse import bench
from halgen.rehearse.nginx import bind_listens
from halgen.rehearse.stack import stray_processes

from conftest import REPO, halgen, require

PROGRAMS = ("nginx", "starman", "start_server", "redis-server", "redis-sentinel", "redis-cli", "wrk", "patroni", "etcd",
            "etcdctl")
SEED_DOCUMENT = REPO.parent / "shared" / "seed" / "ha-perl-stack-on-linode.txt"
# The drills' targets use the repo's own timeouts; the hang drill lasts the read
# timeout plus 3 s, so a 5 s read timeout keeps it short (the retry window,
# lb_next_upstream_timeout_s, must still exceed connect + read: 35 s does).
SHORT_READ_TIMEOUT = {"lb_read_timeout_s": 5}


def _repo(tmp_path: Path, **answers: object) -> Path:
    """A generated repo made the way users make one: 'halgen render --out'."""
    file = tmp_path / "answers.yml"
    with file.open("w") as handle:
        YAML().dump({"pg_version": installed_pg_version() or 15, **answers}, handle)
    out = tmp_path / "repo"
    result = halgen("render", str(file), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _rehearse(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "halgen.cli", "rehearse", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _require_stack() -> None:
    require(*PROGRAMS)
    require_postgres()


def _assert_nothing_left(directory: str) -> None:
    assert directory.startswith("/tmp/halgen-rehearse-")
    assert not Path(directory).exists(), "the temporary directory is removed"
    assert stray_processes(Path(directory)) == []


@pytest.mark.realserver
def test_every_drill_meets_its_target_and_nothing_is_left(tmp_path: Path) -> None:
    _require_stack()
    repo = _repo(tmp_path, **SHORT_READ_TIMEOUT)
    started = time.monotonic()
    result = _rehearse(str(repo), "--drill", "all", "--bench", "--bench-rounds", "1", "--bench-duration", "2",
                       "--json")
    report = json.loads(result.stdout)
    print(f"\nrehearsal took {time.monotonic() - started:.0f} s\n{result.stderr[-3000:]}")
    # Started in dependency order, with progress on stderr.
    order = [result.stderr.index(step) for step in ("etcd on app1, db1, db2", "Patroni on db1 creates the cluster",
                                                      "Redis master redis1", "Sentinels on", "Starlet on app1",
                                                      "HAProxy on lb1", "nginx on lb1", "smoke test")]
    assert order == sorted(order)
    assert report["smoke"] and all(check["ok"] for check in report["smoke"]), report["smoke"]
    drills = {drill["name"]: drill for drill in report["drills"]}
    assert list(drills) == ["app-kill", "app-hang", "redis-kill", "replica-restart", "pg-failover", "etcd-member-loss",
                            "dcs-loss", "pg-switchover", "pg-primary-kill", "pg-rejoin", "pg-primary-hang"]
    for drill in drills.values():
        assert drill["passed"] and drill["skipped"] == (drill["name"] == "pg-failover"), drill  # manual only
    # Only a response the victim had begun may be lost (see halgen.rehearse.drills.CUT_NOTE).
    for fault in ("app-kill", "app-hang"):
        figures = drills[fault]["figures"]
        assert figures["failed requests"] == figures["cut mid-response"] <= 5, figures
    assert drills["app-kill"]["figures"]["requests after the kill"] > 100
    hang = drills["app-hang"]["figures"]
    assert hang["slowest request s"] <= 5 + 2 + 1
    # Every load balancer's HAProxy takes the stopped server out by its check, then sends it nothing.
    assert hang["out of rotation after s"] <= 5 and hang["requests sent to it after"] == 0, hang
    assert drills["redis-kill"]["figures"]["seconds to recover"] <= 10
    assert drills["redis-kill"]["figures"]["session kept"] == "yes"
    assert drills["replica-restart"]["figures"]["rows missing on the replica"] == 0
    assert drills["replica-restart"]["figures"]["rows written around the restart"] > 0
    # PostgreSQL fails over with no script run, within the target, and fences a hung primary.
    kill = drills["pg-primary-kill"]["figures"]
    assert kill["seconds until writes resume"] <= 20 and isinstance(kill["rows lost"], int), kill
    assert drills["pg-rejoin"]["figures"]["seconds until streaming"] <= 60
    switchover = drills["pg-switchover"]["figures"]
    assert switchover["writes unavailable s"] <= 5 and switchover["rows lost"] == 0, switchover
    hang = drills["pg-primary-hang"]["figures"]
    assert hang["writes it acknowledged after the new primary's first"] == 0 and hang["streaming again"] == "yes"
    for quiet in ("etcd-member-loss", "dcs-loss"):  # etcd trouble alone never costs a write or a failover
        figures = drills[quiet]["figures"]
        assert figures["failed writes"] == 0 and "," not in figures["primaries seen"], figures
    # The benchmark's figures are there, one row per load (1x, 2x, 4x the app server workers);
    # its target is bench/rehearse_bench.py's to judge (a 2 s round on a shared CI machine
    # proves nothing about it).
    figures = report["bench"]
    workers = 3 * 5
    assert [row["connections"] for row in figures["rows"]] == [workers, 2 * workers, 4 * workers]
    for row in figures["rows"]:
        for config in ("generated", "seed"):
            assert row[config]["rps"] > 0 and 0 < row[config]["p50_ms"] <= row[config]["p99_ms"]
        assert row["rps_ratio"] > 0
    # What TLS inside the VPC costs: the same data path with vpc_tls on and off (a twin stack).
    transit = figures["vpc_tls"]
    assert transit["path"] == "/healthz"
    for side in ("on", "off"):
        assert transit[side]["rps"] > 0 and transit[side]["errors"] == 0
    assert -1 < transit["rps_cost"] < 1
    assert result.returncode == (0 if report["passed"] else 1)
    assert set(report["misses"]) <= {"benchmark"}
    assert report["strays"] == [] and report["removed"]
    _assert_nothing_left(report["directory"])


@pytest.mark.realserver
def test_sync_replication_loses_no_acknowledged_commit_when_the_primary_dies(tmp_path: Path) -> None:
    """Patroni's synchronous_mode: only the standby that has every acknowledged commit is promoted."""
    _require_stack()
    repo = _repo(tmp_path, pg_replication="sync", pg_replicas=2, app_servers=2, lb_count=1, lb_keepalive=2,
                 redis_mode="single", redis_replicas=0)
    result = _rehearse(str(repo), "--drill", "pg-primary-kill", "--drill", "pg-rejoin", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    kill, rejoin = report["drills"]
    assert kill["name"] == "pg-primary-kill" and kill["passed"] and rejoin["passed"]
    assert kill["figures"]["rows lost"] == 0 and kill["figures"]["rows acknowledged"] > 0
    _assert_nothing_left(report["directory"])


def _interrupt_when(tmp_path: Path, args: list[str], line: str, signum: int) -> tuple[int, str]:
    """Start a rehearsal, send ``signum`` once stderr shows ``line``; its exit code and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "halgen.cli", "rehearse", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        assert proc.stderr is not None
        for text in proc.stderr:
            seen.append(text)
            if line in text:
                time.sleep(0.5)
                proc.send_signal(signum)
                break
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(seen) + rest


@pytest.mark.realserver
@pytest.mark.parametrize(("signum", "line", "drills"), [
    (signal.SIGINT, "Patroni on db1 creates the cluster", []),  # Ctrl-C while the stack starts
    (signal.SIGTERM, "drill app-hang", ["--drill", "app-hang"]),  # while an app server is SIGSTOPped
])
def test_interrupted_rehearsal_stops_everything(tmp_path: Path, signum: int, line: str, drills: list[str]) -> None:
    _require_stack()
    repo = _repo(tmp_path, **SHORT_READ_TIMEOUT)
    code, stderr = _interrupt_when(tmp_path, [str(repo), *drills], line, signum)
    assert code == 130, stderr[-2000:]
    assert "stopped everything it started" in stderr
    directory = re.search(r"under (/tmp/halgen-rehearse-\w+)", stderr)
    assert directory, stderr
    _assert_nothing_left(directory[1])


@pytest.mark.realserver
def test_failed_start_stops_everything(tmp_path: Path) -> None:
    """A service that cannot start (lb1's address is taken) fails the rehearsal, which
    still stops what it had started and removes its directory."""
    import socket

    _require_stack()
    repo = _repo(tmp_path, **SHORT_READ_TIMEOUT)
    # lb1's HTTP port 80 and the fallback 8080, bound (without SO_REUSEADDR) and never
    # listening: nginx can bind neither, and connections to them are refused.
    with socket.socket() as http, socket.socket() as fallback:
        http.bind(("127.23.0.10", 80)) if os.geteuid() == 0 else None
        fallback.bind(("127.23.0.10", 8080))
        result = _rehearse(str(repo), "--loopback-subnet", "127.23.0.0/24")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "lb1" in result.stdout + result.stderr
    directory = re.search(r"under (/tmp/halgen-rehearse-\w+)", result.stderr)
    assert directory, result.stderr
    _assert_nothing_left(directory[1])


def _without_programs(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has nothing on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return {**os.environ, "PATH": str(empty)}


def test_check_names_what_is_missing_and_the_apt_command(tmp_path: Path) -> None:
    result = _rehearse("--check", env=_without_programs(tmp_path))
    assert result.returncode == 2
    missing, command = result.stdout.splitlines()
    for program in ("nginx", "starman", "start_server", "redis-sentinel", "wrk", "perl module DBD::Pg"):
        assert program in missing
    assert re.fullmatch(r"(sudo )?apt-get install -y [a-z0-9 .+-]+", command)
    for package in ("nginx", "starman", "starlet", "libdbd-pg-perl", "libredis-perl", "redis-sentinel",
                    "redis-tools", "wrk"):
        assert package in command.split()


def test_check_passes_where_everything_is_installed() -> None:
    _require_stack()
    require("openssl", "runuser")
    result = _rehearse("--check")
    assert result.returncode == 0, result.stdout


def test_a_missing_program_stops_the_rehearsal_before_it_starts(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    before = set(Path("/tmp").glob("halgen-rehearse-*"))
    result = _rehearse(str(repo), env=_without_programs(tmp_path))
    assert result.returncode == 2
    assert "missing nginx" in result.stderr and "apt-get install -y" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert set(Path("/tmp").glob("halgen-rehearse-*")) == before


@pytest.mark.parametrize(("args", "message"), [
    ([], "give the generated repo"),
    (["{repo}", "--loopback-subnet", "10.0.0.0/24"], "inside 127.0.0.0/8"),
    (["{repo}", "--drill", "nope"], "Invalid value for '--drill'"),
    (["{missing}"], "cannot read the answer file"),
])
def test_usage_errors_exit_2_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    repo = _repo(tmp_path)
    result = _rehearse(*(a.format(repo=repo, missing=tmp_path / "nowhere") for a in args))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "containers"], "give the generated repo to boot"),
    (["{repo}", "--nodes", "containers", "--drill", "app-kill"], "run on loopback only; leave out"),
    (["{repo}", "--nodes", "containers"], "no built user-data for lb1, lb2, "),
])
def test_containers_usage_errors_exit_2_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    require("systemd-nspawn", "debootstrap", "nsenter")
    if os.geteuid() != 0:
        pytest.skip("the containers rehearsal runs as root")
    repo = _repo(tmp_path)
    result = _rehearse(*(a.format(repo=repo) for a in args))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_answers_exit_2(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    answers = repo / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("app_servers: 3", "app_servers: 0"))
    result = _rehearse(str(repo))
    assert result.returncode == 2
    assert re.search(r"\.copier-answers\.yml:\d+: app_servers", result.stderr), result.stderr


# SHA-256 of lines 8-44 of the seed document (its nginx config), taken when it was copied.
SEED_NGINX_SHA256 = "9bb554650ea05c934ad2e14de16de6085555b4c1d1f8325750a0561a9be0254d"


def test_seed_config_is_the_seed_documents_verbatim() -> None:
    import hashlib

    assert hashlib.sha256(bench.SEED_CONF.read_bytes()).hexdigest() == SEED_NGINX_SHA256
    if SEED_DOCUMENT.is_file():  # beside a checkout of the project (not in a bare clone): compare directly too
        lines = SEED_DOCUMENT.read_text().splitlines(keepends=True)
        assert bench.SEED_CONF.read_text() == "".join(lines[7:44])


def test_seed_config_changes_only_upstream_servers_and_listen() -> None:
    seed = bench.SEED_CONF.read_text()
    upstreams = ["127.21.0.40:5000", "127.21.0.41:5000"]
    changed = bench.seed_fragment(seed, upstreams, "127.21.0.10:80")
    removed = [line for line in seed.splitlines() if line not in changed.splitlines()]
    added = [line for line in changed.splitlines() if line not in seed.splitlines()]
    assert removed == [f"server 10.10.0.{n}:5000 weight=10 max_fails=3 fail_timeout=30s;" for n in (1, 2, 3)] \
        + ["listen 80;"]
    assert added == [f"server {u} weight=10 max_fails=3 fail_timeout=30s;" for u in upstreams] \
        + ["listen 127.21.0.10:80;"]


def test_generated_listens_are_bound_to_the_node_address() -> None:
    conf = "server {\n    listen 80 default_server;\n    listen [::]:80 default_server;\n    listen 443 ssl;\n}\n"
    assert bind_listens(conf, "127.21.0.10", {80: 8080, 443: 8443}) == \
        "server {\n    listen 127.21.0.10:8080 default_server;\n    listen 127.21.0.10:8443 ssl;\n}\n"


def test_a_response_cut_mid_way_is_the_only_loss_an_app_fault_may_cause() -> None:
    from halgen.rehearse.drills import _app_fault_passed
    from halgen.rehearse.http import Sample

    ok = Sample(0.0, 0.01, 200, "hello")
    cut = Sample(0.0, 0.01, 0, "IncompleteRead: IncompleteRead(0 bytes read, 26 more expected)", cut=True)
    refused = Sample(0.0, 0.01, 0, "ConnectionRefusedError: refused")
    assert _app_fault_passed([ok, ok], [], workers=5)
    assert _app_fault_passed([ok, cut], [cut], workers=5)
    assert not _app_fault_passed([ok, refused], [refused], workers=5), "a retriable failure is a miss"
    assert not _app_fault_passed([ok, cut, cut], [cut, cut], workers=1), "more cuts than the victim has workers"
    assert not _app_fault_passed([], [], workers=5), "no requests at all proves nothing"
