"""The monitoring node's files: Prometheus' own tools accept them, every alert fires on
one set of series and stays quiet on another (promtool runs the generated tests), mtail
reads nginx's access log lines as the load balancers write them, and the answers that
choose the receivers reach alertmanager.yml."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from halgen.compiler import alerts
from halgen.compiler.pipeline import stack_from
from halgen.compiler.write import render
from halgen.host.processes import Processes, wait_for_port, wait_until

from conftest import GOLDEN, golden_cases, require


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("case", golden_cases())
def test_prometheus_tools_accept_the_files_and_every_alert_passes_its_tests(case: str) -> None:
    require("promtool", "amtool", "mtail", "prometheus-blackbox-exporter")
    repo = GOLDEN / case / "expected"
    mon = repo / "nodes" / "mon1" / "etc" / "prometheus"
    assert _run(["promtool", "check", "config", "--syntax-only", str(mon / "prometheus.yml")]).returncode == 0
    checked = _run(["promtool", "check", "rules", *map(str, (mon / "rules").glob("*.yml"))])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted(p.relative_to(repo).as_posix() for p in (repo / "monitoring").glob("*.test.yml"))
    tested = _run(["promtool", "test", "rules", *tests], cwd=repo)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    assert _run(["amtool", "check-config", str(mon / "alertmanager.yml")]).returncode == 0
    blackbox = _run(["prometheus-blackbox-exporter", "--config.check", f"--config.file={mon / 'blackbox.yml'}"])
    assert blackbox.returncode == 0, blackbox.stderr
    compiled = _run(["mtail", "--compile_only", "--logtostderr", "--port", "0", "--progs",
                     str(repo / "nodes" / "lb1" / "etc" / "mtail")])
    assert compiled.returncode == 0, compiled.stderr


@pytest.mark.parametrize("answers", [{}, {"lb_tls": True, "pg_replicas": 2, "redis_mode": "single",
                                          "redis_replicas": 0}, {"pg_failover": "manual", "vpc_tls": False}])
def test_every_alert_has_a_firing_and_a_quiet_test_and_a_runbook(answers: dict) -> None:
    stack = stack_from(answers)
    found = alerts.alerts(stack)
    names = [a.name for a in found]
    assert len(names) == len(set(names))
    for alert in found:
        assert alert.fires.fires, f"{alert.name}: its firing case expects no alert"
        assert alert.quiet is None or not alert.quiet.fires, alert.name
        assert alert.quiet is not None or alert.name == "Watchdog", f"{alert.name} has no quiet case"
        assert alert.severity in {"critical", "warning", "none"}
    books = alerts.runbooks(stack)
    assert {a.name for book in books for a in book.alerts} == set(names)
    assert all(book.text and book.title.lower() == book.anchor for book in books)


def test_the_drilled_failures_have_their_alerts() -> None:
    """Issue 18's list: what the rehearsal's drills break must have an alert."""
    names = {a.name for a in alerts.alerts(stack_from({}))}
    assert {"NodeDown", "AppInstanceDown", "LoadBalancerDown", "Http5xxRatioHigh", "UpstreamLatencyHigh",
            "PostgresDown", "PostgresNoPrimary", "PostgresPrimaryChanged", "PostgresReplicationLagBytes",
            "PostgresReplicaMissing", "PostgresSlotInactive", "WalArchiveFailing", "PostgresBackupTooOld",
            "PostgresConnectionsHigh", "RedisDown", "RedisNoMaster", "RedisTwoMasters", "RedisReplicaLinkDown",
            "RedisMemoryNearMax", "RedisPersistenceFailing", "SentinelQuorumLost", "DiskFillingUp", "MemoryLow",
            "CpuSaturated", "VpcCertificateExpiring", "UnitFailed", "JobLate", "PatroniNoLeader",
            "PostgresTwoPrimaries"} <= names
    assert "CertificateExpiring" in {a.name for a in alerts.alerts(stack_from({"lb_tls": True}))}


def test_mtail_counts_statuses_and_upstream_times_of_the_load_balancers_log(tmp_path: Path) -> None:
    """Lines as nginx writes them with log_format upstreamlog, a hostile one included (a
    '" 200 1 "' inside the request or the user agent is escaped by nginx as \\x22). mtail
    runs as on a load balancer: started first, it reads what nginx appends (its --one_shot
    mode can read the log before it has loaded the programs, and count nothing)."""
    require("mtail")
    log = tmp_path / "access.log"
    log.write_text("")
    progs = GOLDEN / "default-ha" / "expected" / "nodes" / "lb1" / "etc" / "mtail"
    address, port = "127.20.0.250", 3903
    processes = Processes(tmp_path / "logs")
    try:
        processes.spawn(["mtail", "--logtostderr", "--progs", str(progs), "--logs", str(log), "--address", address,
                         "--port", str(port)], "mtail")
        wait_for_port(address, port, 30)
        with log.open("a") as access:
            access.write(
                '10.0.0.9 [28/Nov/2026:02:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/7.88" rt=0.004 '
                'ua=127.0.0.1:8404 us=200 urt=0.003 rid=a1\n'
                '10.0.0.9 [28/Nov/2026:02:00:00 +0000] "GET /x\\x22 200 1 \\x22 HTTP/1.1" 502 12 "-" '
                '"a \\x22 200 1 \\x22" rt=0.120 ua=127.0.0.1:8404 us=502 urt=0.120 rid=a2\n'
                '10.0.0.9 [28/Nov/2026:02:00:00 +0000] "GET /assets/a.css HTTP/1.1" 304 0 "-" "curl/7.88" rt=0.000 '
                'ua=- us=- urt=- rid=a3\n')

        def metrics() -> dict[str, float]:
            with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5) as response:
                lines = response.read().decode().splitlines()
            found = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines
                     if line.startswith("halgen_")}
            return found if sum(v for k, v in found.items() if k.startswith("halgen_http_requests_total")) == 3 \
                else {}

        found = wait_until(metrics, 30, "mtail to count the three lines")
    finally:
        processes.stop_all()
    counts = {key.split('status="')[1].split('"')[0]: value for key, value in found.items()
              if key.startswith("halgen_http_requests_total")}
    assert counts == {"200": 1, "502": 1, "304": 1}
    assert next(v for k, v in found.items() if k.startswith("halgen_http_upstream_seconds_count")) == 2
    assert next(v for k, v in found.items() if k.startswith("halgen_http_upstream_seconds_sum")) == \
        pytest.approx(0.123)


@pytest.mark.parametrize(("answers", "email", "webhook"), [
    ({}, False, False),
    ({"alert_smtp_relay": "smtp.example.com:587", "alert_smtp_user": "alerts"}, True, False),
    ({"alert_webhook_url": "https://hooks.example.com/halgen"}, False, True),
])
def test_the_receivers_follow_the_answers(tmp_path: Path, answers: dict, email: bool, webhook: bool) -> None:
    out = render(stack_from(answers).a, tmp_path / "repo")
    config = YAML(typ="safe").load((out / "nodes/mon1/etc/prometheus/alertmanager.yml").read_text())
    operators = next(r for r in config["receivers"] if r["name"] == "operators")
    assert ("email_configs" in operators) is email and ("webhook_configs" in operators) is webhook
    if email:
        assert config["global"]["smtp_auth_password_file"] == "/etc/prometheus/alert-smtp-password"
        assert operators["email_configs"][0]["to"] == "ops@example.com"
    if webhook:
        hook = operators["webhook_configs"][0]
        assert hook["url"] == "https://hooks.example.com/halgen"
        assert hook["http_config"]["authorization"]["credentials_file"] == "/etc/prometheus/alert-webhook-token"
    assert "Alerts go to **nobody yet**" in (out / "README.md").read_text() or email or webhook


def test_no_monitoring_node_without_monitoring() -> None:
    stack = stack_from({"monitoring": False})
    assert not stack.mons and "mon" not in stack.roles
    assert all(not n.exporters for n in stack.nodes)
