"""Every node booted from its own built user-data, byte for byte, as a Debian 12 container
(systemd-nspawn) on a private bridge in a network namespace this test makes: first boot
must end with the node serving its role, or with a failure cloud-init reports.

The default stack boots once for the module (about 2 minutes) and takes the drills
last; the other tests boot one to five nodes of builds of their own, and one node in a
QEMU virtual machine. Root only (containers, namespaces, mounts)."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from halgen.compiler import cloudinit, pipeline
from halgen.compiler.model import LINODE, derive
from halgen.host.processes import wait_for_port_from
from halgen.rehearse.nodedrills import NODE_DRILLS
from halgen.rehearse.nodes import BootedStack, missing_programs, rehearse_vms

from conftest import IN_CI, bare_app_repo, git_sshd_config, halgen, require

pytestmark = pytest.mark.realserver
OBJECT_STORAGE_KEYS = {"OBJ_PG_ACCESS_KEY": "bootpgkey", "OBJ_PG_SECRET_KEY": "bootpgsecret",
                       "OBJ_REDIS_ACCESS_KEY": "bootrediskey", "OBJ_REDIS_SECRET_KEY": "bootredissecret"}


def _require_containers() -> None:
    problems = missing_programs() + ([] if os.geteuid() == 0 else ["root"])
    if problems:
        message = f"needs {'; '.join(problems)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _built_repo(where: Path, answers: str = "", keys: bool = True) -> Path:
    """A stack made the way users make one (halgen new), with Object Storage keys or
    without, built with halgen build."""
    repo = where / "stack"
    args = ["new", str(repo), "--defaults"]
    if answers:
        (where / "answers.yml").write_text(answers)
        args += ["--answers", str(where / "answers.yml")]
    made = halgen(*args)
    assert made.returncode == 0, made.stderr
    first = halgen("build", str(repo), "--allow-placeholders")
    assert first.returncode == 0, first.stderr
    if keys:
        env = repo / "secrets" / "secrets.env"
        text = env.read_text()
        for name, value in OBJECT_STORAGE_KEYS.items():
            text = re.sub(rf"^{name}=.*$", f"{name}={value}", text, flags=re.M)
        env.write_text(text)
        again = halgen("build", str(repo), "--allow-placeholders")
        assert again.returncode == 0, again.stderr
    return repo


def _booted(repo: Path, work: Path, acme: bool = True) -> BootedStack:
    stack = derive(pipeline.load_repo_answers(repo), LINODE)
    booted = BootedStack(repo, stack, work, acme=acme)
    try:
        booted.prepare()
    except BaseException:
        booted.close()
        raise
    return booted


@pytest.fixture(scope="module")
def default_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedStack]:
    _require_containers()
    where = tmp_path_factory.mktemp("boot-default")
    booted = _booted(_built_repo(where), where / "work")
    try:
        booted.boot()
        booted.wait_first_boot()
        booted.check()
        yield booted
    finally:
        booted.close()


def test_every_node_of_the_default_stack_finishes_first_boot_serving_its_role(default_stack, record_property) -> None:
    reports = default_stack.reports
    for name, report in reports.items():
        record_property(f"{name}_seconds_to_done", report.seconds_to_done)
    assert len(reports) == len(default_stack.stack.nodes)
    failed = {name: (report.errors, report.system, report.failed_units, report.firewall_diff,
                     {unit: state for unit, state in report.services.items() if state != "enabled/active"})
              for name, report in reports.items() if not report.ok}
    assert not failed, failed
    for report in reports.values():
        assert report.services and all(state == "enabled/active" for state in report.services.values())


def test_the_smoke_test_passes_through_every_load_balancer_from_the_bridge(default_stack) -> None:
    checks = default_stack.smoke()
    assert len(checks) == 7 * len(default_stack.stack.lbs)
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]


def test_replication_sentinel_and_backups_work_between_the_booted_nodes(default_stack) -> None:
    checks = default_stack.data_checks()
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]


def test_the_monitoring_node_scrapes_every_target_and_only_the_watchdog_fires(default_stack, record_property) -> None:
    """Issue 18 on booted nodes: Prometheus on mon1 reaches every exporter over the private
    network (firewalls, TLS, the monitor logins to PostgreSQL, Redis and Sentinel, the
    nginx exporter, mtail, the probes of every load balancer and app instance), and a
    healthy stack raises no alert but the Watchdog."""
    mon = default_stack.containers["mon1"]

    def query(expr: str) -> list[dict]:
        out = mon.run(["curl", "-sf", "--get", "--data-urlencode", f"query={expr}",
                       "http://127.0.0.1:9090/api/v1/query"])
        return json.loads(out.stdout)["data"]["result"] if out.returncode == 0 else []

    def down() -> list[dict]:
        """Targets, probes and exporter logins (PostgreSQL, Redis, Sentinel) that fail."""
        found = [r for expr in ("up", "probe_success", "pg_up", "redis_up") for r in query(expr)]
        return [r["metric"] for r in found if r["value"][1] != "1"] if found else [{"prometheus": "no answer"}]

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and down():
        time.sleep(5)
    assert not down(), down()
    # Every scheduled job, run once by its service as its timer would: each succeeds, and the
    # backups' newest-in-the-bucket metrics reach Prometheus from every node of their tier.
    stack = default_stack.stack
    for node in stack.nodes:
        for job in stack.jobs(node):
            ran = default_stack.containers[node.name].run(["systemctl", "start", f"{stack.project}-{job.name}"],
                                                          timeout=600)
            assert ran.returncode == 0, (node.name, job.name, ran.stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(query("halgen_backup_completed_timestamp_seconds")) < \
            len(stack.dbs) + len(stack.redis):
        time.sleep(5)
    newest = query("halgen_backup_completed_timestamp_seconds")
    assert sorted(r["metric"]["node"] for r in newest) == sorted(n.name for n in stack.dbs + stack.redis), newest
    record_property("prometheus_series", int(query("prometheus_tsdb_head_series")[0]["value"][1]))
    # Alerts from the first boot itself (no leader until db1 made the cluster) resolve at
    # the next evaluations once their condition is gone.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(query('ALERTS{alertstate="firing"}')) > 1:
        time.sleep(5)
    firing = [r["metric"] for r in query('ALERTS{alertstate="firing"}')]
    assert [a["alertname"] for a in firing] == ["Watchdog"], [
        {k: v for k, v in a.items() if k in ("alertname", "job", "instance", "node", "name", "task")} for a in firing]


def test_the_stack_carries_on_when_an_app_server_the_redis_master_or_the_primary_loses_power(
        default_stack, record_property) -> None:
    """Item 4, last on the shared stack (they leave it changed): an app server off under
    load fails no request; the Redis master off: Sentinel promotes and the session lives
    on; the PostgreSQL primary off under writes: Patroni promotes the replica by itself and
    writes resume within 30 s."""
    for name, drill in NODE_DRILLS.items():
        result = drill(default_stack)
        for figure, value in result.figures.items():
            record_property(f"{name}.{figure}", value)
        assert result.ok, result


def test_a_primary_without_keys_booted_after_its_replica_serves_streams_and_reports_the_backup_failure(
        tmp_path) -> None:
    """Two defects, one boot (each boot costs minutes of CI).
    A replica booted first: db2 copied db1 as soon as db1 answered pg_isready, before db1's
    setup had made the replication role and slot; db2 now waits for what it needs.
    A primary without Object Storage keys: db1 stopped at 'pgbackrest stanza-create' with the
    database not enabled, and cloud-init said nothing useful; now PostgreSQL is enabled and
    serving and the boot error names pgBackRest."""
    _require_containers()
    booted = _booted(_built_repo(tmp_path, keys=False), tmp_path / "work")
    try:
        booted.boot(["db2"])  # also the second etcd member Patroni on db1 needs for its quorum
        time.sleep(45)
        assert booted._cloud_init_status("db2") == "running"  # waiting for db1, not failed
        booted.boot(["db1"])
        booted.wait_first_boot(["db1", "db2"], timeout=900)
        reports = booted.check(["db1", "db2"])
        db1 = reports["db1"]
        assert db1.cloud_init == "error"
        assert db1.services["patroni"] == "enabled/active"  # Patroni runs PostgreSQL
        assert any("pgBackRest" in line for line in db1.errors), db1.errors
        ready = booted.containers["db1"].run(["pg_isready", "-h", "/var/run/postgresql"])
        assert ready.returncode == 0, ready.stdout
        streaming = booted.containers["db1"].run(
            ["runuser", "-u", "postgres", "--", "psql", "-XAtc",
             "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"])
        assert streaming.stdout.strip() == "1"
        assert reports["db2"].services["patroni"] == "enabled/active", reports["db2"]
    finally:
        booted.close()


def test_a_tls_load_balancer_without_its_acme_server_serves_and_reports_the_failure(tmp_path) -> None:
    """Defect: a TLS load balancer's first boot stopped at 'nginx -t' before certbot, and
    with that fixed a certbot failure ended 'done' with nginx stopped. Now: nginx serves
    (a throwaway certificate), a timer retries, and cloud-init reports the failure."""
    _require_containers()
    booted = _booted(_built_repo(tmp_path, "lb_tls: true\n"), tmp_path / "work", acme=False)
    try:
        report = booted.first_boot("lb1")
        assert report.cloud_init == "error"
        assert report.services["nginx"] == "enabled/active"
        lb = booted.containers["lb1"]
        served = lb.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--resolve",
                         "example.com:443:127.0.0.1", "https://example.com/nginx-health"])
        assert served.stdout in {"200", "502", "503"}, served  # nginx answers HTTPS; the app is not booted
        retry = lb.run(["systemctl", "is-active", "perlstack-tls-issue.timer"])
        assert retry.stdout.strip() == "active", retry
    finally:
        booted.close()


def test_a_tls_stack_boots_with_certificates_from_the_acme_stand_in_on_both_load_balancers(tmp_path) -> None:
    """Item 6: pebble answers at Let's Encrypt's production URL on the bridge (the node
    resolves that name to it and trusts its certificate; the user-data is unchanged).
    lb2's challenges reach lb1 (pebble resolves every name there) and are relayed."""
    _require_containers()
    answers = "lb_tls: true\napp_servers: 1\npg_replicas: 0\nredis_mode: single\nredis_replicas: 0\n"
    booted = _booted(_built_repo(tmp_path, answers), tmp_path / "work")
    try:
        booted.boot()
        booted.wait_first_boot(timeout=600)
        reports = booted.check()
        assert all(report.ok for report in reports.values()), reports
        checks = booted.smoke()  # HTTPS verified against pebble's issuing root, with the stack's name
        assert len(checks) == 14 and all(check.ok for check in checks), [c for c in checks if not c.ok]
        for lb in ("lb1", "lb2"):
            issuer = booted.containers[lb].run(["sh", "-c", "openssl x509 -noout -issuer "
                                                "< /etc/nginx/tls/current/fullchain.pem"])
            assert "Pebble" in issuer.stdout, issuer
    finally:
        booted.close()


def _local_cpan(where: Path) -> Path:
    """A CPAN mirror with one pure-Perl distribution Debian does not have."""
    dist = "Halgen-Rehearsal-Dep-0.01"
    source = where / "src" / dist
    (source / "lib" / "Halgen" / "Rehearsal").mkdir(parents=True)
    (source / "lib" / "Halgen" / "Rehearsal" / "Dep.pm").write_text(
        "package Halgen::Rehearsal::Dep;\nour $VERSION = '0.01';\nsub answer { 'from CPAN' }\n1;\n")
    (source / "Makefile.PL").write_text("use ExtUtils::MakeMaker;\nWriteMakefile(NAME => 'Halgen::Rehearsal::Dep', "
                                        "VERSION_FROM => 'lib/Halgen/Rehearsal/Dep.pm');\n")
    authors = where / "cpan" / "authors" / "id" / "H" / "HA" / "HALGEN"
    authors.mkdir(parents=True)
    subprocess.run(["tar", "-czf", str(authors / f"{dist}.tar.gz"), "-C", str(source.parent), dist], check=True)
    (where / "cpan" / "modules").mkdir()
    index = ("File:         02packages.details.txt\nColumns:      package name, version, path\n"
             "Line-Count:   1\n\n"
             f"Halgen::Rehearsal::Dep 0.01 H/HA/HALGEN/{dist}.tar.gz\n")
    with gzip.open(where / "cpan" / "modules" / "02packages.details.txt.gz", "wt") as packages:
        packages.write(index)
    return where / "cpan"


APP_WITH_DEPS = """use Text::Table ();
use Halgen::Rehearsal::Dep;
sub { [200, ['Content-Type' => 'text/plain'], ['private app, Text::Table ' . $Text::Table::VERSION . ', '
      . Halgen::Rehearsal::Dep::answer()]] };
"""


def test_an_app_server_clones_a_private_repo_over_ssh_and_installs_its_cpanfile(tmp_path) -> None:
    """Item 7: an SSH app_repo on a git server on the bridge (real sshd, a bare repo), the
    deploy key 'halgen build' made (added to the server as a deploy key would be), and
    the server's host key as the answers name it; its cpanfile needs Text::Table (Debian:
    libtext-table-perl) and a module only a CPAN mirror on the bridge has. Before, first boot
    had no git, no key and no known host, and stopped under set -e."""
    _require_containers()
    gateway = "10.0.0.1"  # the default VPC subnet's first address: the bridge
    server = tmp_path / "git-server"
    server.mkdir()
    host_key = server / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    kind, blob = host_key.with_suffix(".pub").read_text().split()[:2]
    cpanfile = "requires 'Text::Table', '1.130';\nrequires 'Halgen::Rehearsal::Dep';\n"
    bare = bare_app_repo(server, APP_WITH_DEPS, {"cpanfile": cpanfile})
    cpan = _local_cpan(tmp_path)
    # etcd off app1 (booted alone here, one member could never reach etcd's quorum)
    answers = ("etcd_nodes: [db1, db2, redis1]\n"
               f"app_repo: root@{gateway}:{bare}\n"
               f"app_repo_host_keys: ['{gateway} {kind} {blob}']\napp_servers: 1\n"
               f"cpan_mirror: http://{gateway}:8081/\n")
    repo = _built_repo(tmp_path, answers)
    stack = derive(pipeline.load_repo_answers(repo), LINODE)
    assert {"git", "libmodule-cpanfile-perl", "cpanminus"} <= set(cloudinit.packages(stack, stack.apps[0]))
    config = git_sshd_config(server, f"{gateway}:22", host_key, (repo / "secrets" / "deploy-key.pub").read_text())
    booted = BootedStack(repo, stack, tmp_path / "work", extra_packages=("libtext-table-perl",))
    try:
        booted.prepare()
        enter = booted.network.enter()
        booted.processes.spawn([*enter, shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                               "git-sshd")
        booted.processes.spawn([*enter, sys.executable, "-m", "http.server", "--bind", gateway, "--directory",
                                str(cpan), "8081"], "cpan")
        wait_for_port_from(enter, gateway, 22)
        wait_for_port_from(enter, gateway, 8081)
        report = booted.first_boot("app1")
        assert report.ok, "\n".join(report.errors + [f"{u}: {st}" for u, st in report.services.items()])
        app = booted.containers["app1"]
        served = app.run(["curl", "-s", f"http://{stack.apps[0].address}:{stack.apps[0].instances[0].port}/"])
        assert re.fullmatch(r"private app, Text::Table 1\.\d+, from CPAN", served.stdout), served
        origin = app.run(["cat", f"{stack.apps[0].paths.app_root}/releases/initial/.git/config"])
        assert f"url = root@{gateway}:{bare}" in origin.stdout, origin
        steps = app.run(["grep", "app-deps:", "/var/log/cloud-init-output.log"]).stdout
        assert "Debian packages: libtext-table-perl" in steps and "from CPAN: Halgen::Rehearsal::Dep" in steps, steps
    finally:
        booted.close()


def test_a_load_balancer_boots_in_a_virtual_machine_with_a_kernel_of_its_own(tmp_path, record_property) -> None:
    """Item 5: the same user-data in QEMU (emulated; the node's own kernel, so ufw's
    rules are the VM's netfilter, not the host's): first boot ends done, and from the
    bridge port 80 answers while SSH (admins' networks only) gets no answer.
    One node here (several minutes each); 'make boot-vms' boots one of every role."""
    _require_containers()
    require("qemu-system-x86_64", "mkfs.ext4")
    names = os.environ.get("HALGEN_VM_NODES", "lb1").split(",")
    # Without the monitoring exporters: emulated, every package costs; the containers boot them.
    repo = _built_repo(tmp_path, "monitoring: false\n")
    stack = derive(pipeline.load_repo_answers(repo), LINODE)
    report = rehearse_vms(repo, stack, keep=False, names=names)
    for node in report.nodes:
        record_property(f"{node.name}_vm_seconds_to_done", node.seconds_to_done)
    print(report.text())
    assert report.passed, report.text()
    assert [n.name for n in report.nodes] == names
    if "lb1" in names:
        assert {"lb1: port 80 from the bridge is open", "lb1: port 22 from the bridge is filtered"} <= {
            c.name for c in report.data}
