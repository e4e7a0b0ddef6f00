"""Malformed and hostile answer files: exit 2, one line per problem naming file, line
and field, no traceback, and nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import halgen

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileCaseKey00000000000000000000000000 t@t"

# (case id, file content, expected line, expected field path, expected words in the message)
CASES: list[tuple[str, bytes, int, str, str]] = [
    ("unknown-key-typo", b"project: shop\nlb_keepalvie: 4\n", 2, "lb_keepalvie", "did you mean 'lb_keepalive'"),
    ("wrong-type", b"app_servers: three\n", 1, "app_servers", "whole number"),
    ("bool-not-int", b"app_servers: true\n", 1, "app_servers", "whole number"),
    ("above-maximum", b"project: x1\napp_servers: 999\n", 2, "app_servers", "at most 250"),
    ("enum", b"pg_version: 12\n", 1, "pg_version", "one of: 14, 15, 16, 17"),
    ("newline-in-domain", b'domains: ["ok.example.com", "evil.example.com\\n  return 302 http://x;"]\n', 1, "domains[1]", "contains a control character"),
    ("semicolon-in-project", b"project: 'shop; rm -rf /'\n", 1, "project", "is not allowed: must be"),
    ("shell-in-ref", b"app_ref: 'main$(reboot)'\n", 1, "app_ref", "is not allowed: must be"),
    ("directive-in-health-path", b"lb_health_path: '/h { return 200; }'\n", 1, "lb_health_path", "is not allowed: must be"),
    ("traversal-in-static", b"lb_static_paths: ['/static/../../etc/']\n", 1, "lb_static_paths[0]", "is not allowed: must be"),
    ("bad-ssh-key", b"admins:\n  - name: eve\n    ssh_keys: ['ssh-ed25519 AAAA\\nrm -rf /']\n", 3, "admins[0].ssh_keys[0]", "is not allowed: must be"),
    ("admin-missing-keys", b"admins:\n  - name: eve\n", 2, "admins[0].ssh_keys", "is required"),
    ("cron-minute-60", b'backup_schedule: "60 3 * * 0"\n', 1, "backup_schedule", "minute 60 is out of range 0-59"),
    ("cron-hour-24", b'backup_verify_schedule: "17 24 * * 0"\n', 1, "backup_verify_schedule", "hour 24 is out of range"),
    ("cron-weekday-8", b'redis_backup_schedule: "17 3 * * 8"\n', 1, "redis_backup_schedule", "day of week 8"),
    ("cron-never-fires", b'backup_diff_schedule: "17 3 31 2 *"\n', 1, "backup_diff_schedule", "never fires"),
    ("whole-float", b"app_workers: 5.0\n", 1, "app_workers", "whole number"),
    ("escape-in-key", b'"domains\\u001b[2J": []\n', 1, '["domains\\u001b[2J"]', "control character"),
    ("ssh-open-to-all-in-halves", b"admin_cidrs: [0.0.0.0/1, 128.0.0.0/1]\n", 1, "admin_cidrs", "whole IPv4 Internet"),
    ("ssh-open-to-all", b"admin_cidrs: [0.0.0.0/0]\n", 1, "admin_cidrs", "whole IPv4 Internet"),
    ("starman-on-sentinel-port", b"app_port: 26378\napp_instances: 2\n", 1, "app_port", "port 26379 of app1"),
    ("pg-setting-typo", b"pg_settings:\n  shared_bufers: 2GB\n", 2, "pg_settings.shared_bufers", "did you mean 'shared_buffers'"),
    ("pg-setting-not-a-size", b"pg_settings:\n  work_mem: lots\n", 2, "pg_settings.work_mem", "whole number with an optional unit"),
    ("pg-setting-bad-unit", b"pg_settings:\n  statement_timeout: 30parsecs\n", 2, "pg_settings.statement_timeout", "unit 'parsecs'"),
    ("pg-setting-enum", b"pg_settings:\n  wal_compression: sometimes\n", 2, "pg_settings.wal_compression", "must be one of"),
    ("pg-setting-over-ram", b"pg_settings:\n  maintenance_work_mem: 64GB\n", 2, "pg_settings.maintenance_work_mem", "more memory than the database plan"),
    ("pg-setting-other-version", b"pg_version: 15\npg_settings:\n  summarize_wal: 'on'\n", 3, "pg_settings.summarize_wal", "not a PostgreSQL 15 setting"),
    ("endpoint-in-another-region", b"region: fr-par\nbackup_endpoint: us-ord-1.linodeobjects.com\n", 2, "backup_endpoint", "use fr-par-1.linodeobjects.com"),
    ("sync-without-replica", b"pg_replicas: 0\npg_replication: sync\n", 2, "pg_replication", "at least two replicas"),
    ("sync-with-one-replica", b"pg_replicas: 1\npg_replication: sync\n", 2, "pg_replication", "at least two replicas"),
    ("retry-window-too-short", b"lb_read_timeout_s: 30\nlb_next_upstream_timeout_s: 20\n", 2,
     "lb_next_upstream_timeout_s", "never retried"),
    ("address-collision", b"node_addresses:\n  app1: 10.0.0.50\n  app2: 10.0.0.50\n", 3, "node_addresses.app2", "already the address of app1"),
    ("address-outside-subnet", b"node_addresses:\n  db1: 10.9.9.9\n", 2, "node_addresses.db1", "outside the subnet"),
    ("address-reserved", b"node_addresses:\n  db1: 10.0.0.254\n", 2, "node_addresses.db1", "Linode reserves"),
    ("public-subnet", b"vpc_subnet: 8.8.8.0/24\n", 1, "vpc_subnet", "RFC 1918"),
    ("sentinel-needs-replica", b"redis_mode: sentinel\nredis_replicas: 0\n", 2, "redis_replicas", "at least 1"),
    ("keepalive-timeout-order", b"lb_keepalive_timeout_s: 9\napp_keepalive_timeout_s: 5\n", 1, "lb_keepalive_timeout_s", "shorter than app_keepalive_timeout_s"),
    ("too-few-db-connections", b"app_servers: 50\npg_max_connections: 100\n", 2, "pg_max_connections", "connections"),
    ("weight-for-unknown-node", b"lb_weights: {app9: 3}\n", 1, "lb_weights.app9", "names no app server"),
    ("ssh-repo-without-host-keys", b"app_repo: git@git.example.com:shop/app.git\n", 1, "app_repo_host_keys",
     "needs git.example.com's host keys"),
    ("host-key-of-another-host", b"app_repo: git@git.example.com:shop/app.git\napp_repo_host_keys:\n"
     b"  - evil.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n", 3,
     "app_repo_host_keys[0]", "not app_repo's host git.example.com"),
    ("host-keys-for-https", b"app_repo: https://git.example.com/shop/app.git\napp_repo_host_keys:\n"
     b"  - git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n", 2,
     "app_repo_host_keys", "only for an SSH app_repo"),
    ("host-key-with-options", b"app_repo_host_keys: ['@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq']\n",
     1, "app_repo_host_keys[0]", "is not allowed: must be"),
    ("malformed-yaml", b"project: shop\n  domains: [a\n", 2, "(document)", "invalid YAML"),
    ("unclosed-quote", b'project: "shop\n', 1, "(document)", "invalid YAML"),
    ("empty-file", b"", 1, "(document)", "empty"),
    ("only-comments", b"# nothing here\n\n", 1, "(document)", "empty"),
    ("top-level-list", b"- project: shop\n", 1, "(document)", "not a list"),
    ("top-level-scalar", b"just a string\n", 1, "(document)", "not a single str value"),
    ("duplicate-key", b"project: a1\nproject: b2\n", 2, "(document)", "invalid YAML"),
    ("alias-bomb", b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n', 1, "(document)", "anchors and aliases"),
    ("binary-junk", bytes(range(256)) * 4, 2, "(document)", "not UTF-8"),
    ("nul-byte", b"project: shop\x00\n", 1, "(document)", "NUL byte"),
    ("two-documents", b"project: a1\n---\nproject: b2\n", 2, "(document)", "more than one YAML document"),
    ("non-string-key", b"1: one\n", 1, "1", "field names must be text"),
    ("huge-file", b"# " + b"x" * (30 * 1024 * 1024) + b"\n", 1, "(document)", "too large"),
]


@pytest.mark.parametrize("case_id, content, line, field, words", CASES, ids=[c[0] for c in CASES])
def test_bad_answers_exit_2_with_one_line_and_write_nothing(tmp_path: Path, case_id: str, content: bytes,
                                                            line: int, field: str, words: str) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_bytes(content)
    out = tmp_path / "out"
    result = halgen("render", str(answers), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing may be written for bad answers"
    assert [p.name for p in tmp_path.iterdir()] == ["answers.yml"], "no staging left behind"
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{answers}:{line}: {field}: "), first
    assert words in first, first
    for err_line in result.stderr.splitlines():
        assert re.match(rf"^{re.escape(str(answers))}:\d+: \S+: .+", err_line), err_line


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text("project: Bad Name\napp_servers: 0\nlb_keepalvie: 3\nimage: linode/arch\n")
    result = halgen("check", str(answers))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert [ln.split(": ")[1] for ln in lines] == ["project", "app_servers", "lb_keepalvie", "image"]


def test_value_is_shown_escaped_on_one_line(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text('project: "a\\nb"\n')
    result = halgen("check", str(answers))
    assert result.returncode == 2
    assert result.stderr.strip().endswith('(got "a\\nb")')
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_answer_file(tmp_path: Path) -> None:
    result = halgen("render", str(tmp_path / "nope.yml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "cannot read the answer file" in result.stderr
    assert "Traceback" not in result.stderr
