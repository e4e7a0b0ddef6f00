"""copier journeys on a real git history: blueprint fixes arrive, local edits stay,
overlaps become conflicts, answers change (scale out and in), answers get migrated."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

from halgen.compiler import secrets
from halgen.compiler.migrate import KEEPS, keep_entry, migration_entry

from conftest import blueprint_repo, halgen

NGINX_TEMPLATE = "blueprints/stack/nodes/{% yield n from stack().lbs %}{{ n.name }}{% endyield %}/etc/nginx/nginx.conf.jinja"
MARKERS = re.compile(rb"^(<<<<<<<|>>>>>>>) ", re.M)


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _release(bp: Path, tag: str) -> None:
    _git(bp, "commit", "-qam", tag)
    _git(bp, "tag", tag)


def _copier(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "copier", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _generate(bp: Path, dst: Path, *data: str) -> None:
    extra = [arg for item in data for arg in ("--data", item)]
    result = _copier("copy", "--trust", "--defaults", "--quiet", *extra, str(bp), str(dst))
    assert result.returncode == 0, result.stderr
    secrets.ensure(dst)
    _git(dst, "init", "-q", "-b", "main")
    _git(dst, "add", "-A")
    _git(dst, "commit", "-qm", "generated")


def _leftovers(dst: Path, allowed: set[str]) -> list[str]:
    bad = [str(p.relative_to(dst)) for p in dst.rglob("*.rej")]
    for path in dst.rglob("*"):
        if path.is_file() and ".git" not in path.parts and MARKERS.search(path.read_bytes()):
            if str(path.relative_to(dst)) not in allowed:
                bad.append(str(path.relative_to(dst)))
    return bad


def test_update_brings_the_fix_keeps_edits_and_marks_overlaps(tmp_path: Path, record_property) -> None:
    bp = blueprint_repo(tmp_path)
    dst = tmp_path / "stack"
    _generate(bp, dst)
    secrets_before = (dst / secrets.SECRETS_FILE).read_bytes()
    lb1 = dst / "nodes/lb1/etc/nginx/nginx.conf"
    lb1.write_text(lb1.read_text().replace("worker_connections 8192;", "worker_connections 4096;")
                   .replace("keepalive_requests 100000;", "keepalive_requests 500;"))
    _git(dst, "commit", "-qam", "local tuning")

    template = bp / NGINX_TEMPLATE
    template.write_text(template.read_text().replace("keepalive_requests 100000;", "keepalive_requests 2000;")
                        .replace("    server_tokens off;\n", "    server_tokens off;\n    # fixed in v2\n"))
    _release(bp, "v2.0.0")

    started = time.monotonic()
    result = _copier("update", "--trust", "--defaults", "--quiet", cwd=dst)
    record_property("copier_update_s", round(time.monotonic() - started, 2))
    assert result.returncode == 0, result.stderr

    lb2 = (dst / "nodes/lb2/etc/nginx/nginx.conf").read_text()
    assert "keepalive_requests 2000;" in lb2 and "# fixed in v2" in lb2, "the fix arrived"
    mine = lb1.read_text()
    assert "worker_connections 4096;" in mine, "an edit in an untouched region survived"
    assert "# fixed in v2" in mine
    assert re.search(r"<<<<<<< .*\n\s*keepalive_requests 500;\n=======\n\s*keepalive_requests 2000;\n>>>>>>> ",
                     mine), "the overlapping edit became a conflict, not a silent loss"
    assert "UU nodes/lb1/etc/nginx/nginx.conf" in _git(dst, "status", "--porcelain")
    assert _leftovers(dst, {"nodes/lb1/etc/nginx/nginx.conf"}) == []
    assert (dst / secrets.SECRETS_FILE).read_bytes() == secrets_before, "secrets untouched"
    assert "_commit: v2.0.0" in (dst / ".copier-answers.yml").read_text()


def test_scale_out_and_in(tmp_path: Path) -> None:
    bp = blueprint_repo(tmp_path)
    dst = tmp_path / "stack"
    _generate(bp, dst)

    result = halgen("scale", "app", "5", "--repo", str(dst), "--yes")
    assert result.returncode == 0, result.stderr
    assert (dst / "nodes/app5/etc/systemd/system/perlstack-app-5000.service").is_file()
    balanced = re.findall(r"server app\d+-5000 (10\.0\.0\.\d+):5000 ", (dst / "nodes/lb1/etc/haproxy/haproxy.cfg").read_text())
    assert balanced == [f"10.0.0.{40 + i}" for i in range(5)]
    assert "10.0.0.44/32" in (dst / "firewalls/db.json").read_text()
    assert "10.0.0.44/32" in (dst / "nodes/db1/etc/postgresql/15/main/pg_hba.conf").read_text()
    assert "| app5 |" in (dst / "README.md").read_text()
    assert "app_servers: 5" in (dst / ".copier-answers.yml").read_text()
    assert _leftovers(dst, set()) == []
    _git(dst, "add", "-A")
    _git(dst, "commit", "-qm", "scale out")

    refused = halgen("scale", "app", "2", "--repo", str(dst))  # no terminal: the question is not answered
    assert refused.returncode == 2 and "app3, app4, app5" in refused.stdout + refused.stderr
    assert _git(dst, "status", "--porcelain") == "", "nothing changed without a yes"

    result = halgen("scale", "app", "2", "--repo", str(dst), "--yes")
    assert result.returncode == 0, result.stderr
    assert not (dst / "nodes/app3").exists() and not (dst / "nodes/app5").exists()
    assert "10.0.0.42" not in (dst / "nodes/lb1/etc/haproxy/haproxy.cfg").read_text()
    assert _leftovers(dst, set()) == []


def test_scale_refuses_invalid_counts_and_dirty_repos(tmp_path: Path) -> None:
    bp = blueprint_repo(tmp_path)
    dst = tmp_path / "stack"
    _generate(bp, dst)
    too_many = halgen("scale", "app", "150", "--repo", str(dst), "--yes")
    assert too_many.returncode == 2 and "pg_max_connections" in too_many.stderr
    (dst / "README.md").write_text("mine\n")
    dirty = halgen("scale", "app", "4", "--repo", str(dst), "--yes")
    assert dirty.returncode == 2 and "uncommitted changes" in dirty.stderr


def test_migration_renames_a_stored_answer_across_tags(tmp_path: Path) -> None:
    bp = blueprint_repo(tmp_path)
    copier_yml = bp / "copier.yml"
    current = copier_yml.read_text()
    # v1 called the answer upstream_keepalive ...
    copier_yml.write_text(current.replace("\nlb_keepalive:\n", "\nupstream_keepalive:\n")
                          .replace("halgen_field_error('lb_keepalive')", "halgen_field_error('upstream_keepalive')"))
    _git(bp, "commit", "-qam", "v1 naming")
    _git(bp, "tag", "-f", "v1.0.0")
    dst = tmp_path / "stack"
    _generate(bp, dst, "upstream_keepalive=3")
    assert "upstream_keepalive: 3" in (dst / ".copier-answers.yml").read_text()

    # ... v2 renames it to lb_keepalive and ships a migration.
    from ruamel.yaml import YAML

    buffer = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump({"_migrations": [migration_entry("v2.0.0", "upstream_keepalive", "lb_keepalive"),
                               *(keep_entry(*kept) for kept in KEEPS)]}, buffer)
    start, end = current.index("_migrations:"), current.index("\nproject:") + 1
    copier_yml.write_text(current[:start] + buffer.getvalue() + current[end:])
    _release(bp, "v2.0.0")

    result = _copier("update", "--trust", "--defaults", "--quiet", cwd=dst)
    assert result.returncode == 0, result.stderr
    answers = (dst / ".copier-answers.yml").read_text()
    assert "lb_keepalive: 3" in answers and "upstream_keepalive" not in answers
    assert "keepalive 3;" in (dst / "nodes/lb1/etc/nginx/nginx.conf").read_text()
    assert _leftovers(dst, set()) == []


def test_status_reports_version_newer_and_local_edits(tmp_path: Path) -> None:
    bp = blueprint_repo(tmp_path)
    dst = tmp_path / "stack"
    _generate(bp, dst)
    clean = halgen("status", str(dst))
    assert clean.returncode == 0, clean.stderr
    assert "at v1.0.0" in clean.stdout and "newer:       no" in clean.stdout and "local edits: none" in clean.stdout
    (dst / "nodes/lb1/etc/nginx/nginx.conf").write_text("# mine\n")
    (dst / "notes.txt").write_text("mine\n")
    template = bp / NGINX_TEMPLATE
    template.write_text(template.read_text() + "# v2\n")
    _release(bp, "v2.0.0")
    report = halgen("status", str(dst))
    assert "newer:       yes: 2.0.0" in report.stdout
    assert "edited:      nodes/lb1/etc/nginx/nginx.conf" in report.stdout
    assert "added:       notes.txt" in report.stdout


def test_status_of_a_rendered_repo_explains(tmp_path: Path) -> None:
    assert halgen("render", "--out", str(tmp_path / "r")).returncode == 0
    result = halgen("status", str(tmp_path / "r"))
    assert result.returncode == 2 and "not copier-managed" in result.stderr


def test_an_update_keeps_a_stack_made_before_patroni_on_manual_failover(tmp_path: Path) -> None:
    """A stack whose answers predate pg_failover runs PostgreSQL without Patroni: an update must
    not turn its repo (and its pg-failover.sh) into Patroni's under the running nodes."""
    bp = blueprint_repo(tmp_path)  # tagged v1.0.0
    old, new = tmp_path / "old", tmp_path / "new"
    _generate(bp, old)
    _generate(bp, new)
    answers = old / ".copier-answers.yml"
    answers.write_text(re.sub(r"(?m)^pg_failover: .*\n", "", answers.read_text()))  # as the previous blueprint wrote it
    _git(old, "commit", "-qam", "made before Patroni")
    template = bp / NGINX_TEMPLATE
    template.write_text(template.read_text().replace("    server_tokens off;\n", "    server_tokens off;\n    # v2\n"))
    _release(bp, "v2.0.0")
    for dst in (old, new):
        result = _copier("update", "--trust", "--defaults", "--quiet", cwd=dst)
        assert result.returncode == 0, result.stderr
    assert "pg_failover: manual" in answers.read_text()
    assert "pg-bootstrap-replica" in (old / "scripts/pg-failover.sh").read_text()
    assert not (old / "nodes/db1/etc/patroni").exists()
    assert "pg_failover: patroni" in (new / ".copier-answers.yml").read_text(), "a stack made with Patroni keeps it"
    assert (new / "nodes/db1/etc/patroni/config.yml").is_file()
