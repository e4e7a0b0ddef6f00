"""Secrets: random (>= 128 bits), made once, kept across re-renders, never in tracked files,
one per purpose and tier, and on each node only the ones it uses."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import pytest

from halgen.compiler import cloudinit, secrets

from conftest import GOLDEN, golden_cases, halgen, tree

# Distinct stand-ins for the keys the user provides, so that each can be traced to a node.
PROVIDED_KEYS = {"OBJ_PG_ACCESS_KEY": "P" * 20, "OBJ_PG_SECRET_KEY": "p" * 40,
                 "OBJ_REDIS_ACCESS_KEY": "R" * 20, "OBJ_REDIS_SECRET_KEY": "r" * 40}


def _secrets(repo: Path) -> dict[str, str]:
    return secrets.read(repo)


def test_render_creates_strong_secrets_with_private_modes(tmp_path: Path) -> None:
    result = halgen("render", str(GOLDEN / "default-ha" / "answers.yml"), "--out", str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    values = _secrets(tmp_path / "repo")
    assert set(values) == set(secrets.NAMES)
    generated = [values[name] for name in secrets.GENERATED]
    for value in generated:
        assert len(value) * math.log2(64) >= 128
    assert len(set(generated)) == len(generated)
    assert all(values[name] == "" for name in secrets.PROVIDED), "access keys come from the user, never invented"
    path = tmp_path / "repo" / secrets.SECRETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_secrets_survive_forced_rerender_and_build(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    before = _secrets(repo)
    assert halgen("render", str(GOLDEN / "large" / "answers.yml"), "--out", str(repo), "--force").returncode == 0
    assert _secrets(repo) == before
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    assert _secrets(repo) == before


def test_the_deploy_key_is_made_once_kept_and_only_on_the_app_servers(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    answers = str(GOLDEN / "tls-sync" / "answers.yml")  # an SSH app_repo
    assert halgen("render", answers, "--out", str(repo)).returncode == 0
    built = halgen("build", str(repo), "--allow-placeholders")
    assert built.returncode == 0 and "secrets/deploy-key.pub" in built.stdout, built.stdout
    key_file = repo / "secrets" / "deploy-key"
    key = key_file.read_text()
    assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and key_file.stat().st_mode & 0o077 == 0
    assert halgen("render", answers, "--out", str(repo), "--force").returncode == 0
    again = halgen("build", str(repo), "--allow-placeholders")
    assert again.returncode == 0 and "deploy-key.pub" not in again.stdout, "told once, when it was made"
    assert key_file.read_text() == key, "kept across a forced re-render and builds"
    holders = {path.parts[-4] for path in (repo / "build" / "nodes").glob("*/etc/bank/deploy-key")}
    assert holders == {"app1", "app2", "app3"}
    for name, content in tree(repo).items():
        assert key.encode() not in content and b"OPENSSH PRIVATE KEY" not in content, name


def test_no_secret_in_tracked_files_and_build_files_are_private(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", str(GOLDEN / "large" / "answers.yml"), "--out", str(repo)).returncode == 0
    built = halgen("build", str(repo), "--allow-placeholders")
    assert built.returncode == 0, built.stderr
    values = [v for v in _secrets(repo).values() if v]
    for name, content in tree(repo).items():
        for value in values:
            assert value.encode() not in content, f"a secret leaked into tracked file {name}"
    built_files = [p for p in (repo / "build").rglob("*") if p.is_file()]
    assert len(built_files) >= 10
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in built_files)
    redis_conf = (repo / "build/nodes/redis1/etc/redis/secrets.conf").read_text()
    assert f"masterauth {_secrets(repo)['REDIS_REPLICATION_PASSWORD']}" in redis_conf
    assert ".gitignore" in tree(repo) and b"/secrets/" in tree(repo)[".gitignore"]


def test_a_missing_secret_is_added_and_the_others_kept(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    before = _secrets(repo)
    kept = {k: v for k, v in before.items() if k != "REDIS_APP_PASSWORD"}
    secrets.write(repo, kept)
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    after = _secrets(repo)
    assert {k: after[k] for k in kept} == kept
    assert after["REDIS_APP_PASSWORD"] != before["REDIS_APP_PASSWORD"]


def test_malformed_secrets_file_is_a_clean_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    (repo / secrets.SECRETS_FILE).write_text("REDIS_APP_PASSWORD=short\n")
    result = halgen("build", str(repo), "--allow-placeholders")
    assert result.returncode == 2
    assert f"{repo / secrets.SECRETS_FILE}:1:" in result.stderr and "Traceback" not in result.stderr


def test_build_on_a_repo_without_answers(tmp_path: Path) -> None:
    result = halgen("build", str(tmp_path))
    assert result.returncode == 2 and ".copier-answers.yml" in result.stderr and "Traceback" not in result.stderr


def test_build_refuses_placeholders_naming_each_field(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    result = halgen("build", str(repo))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (repo / "build").exists(), "nothing built"
    fields = [line.split(": ", 2)[1] for line in result.stderr.splitlines()[:-1]]
    assert fields == ["admin_cidrs[0]", "admin_email", "admins[0].ssh_keys[0]", "domains[0]", "domains[1]",
                      "OBJ_PG_ACCESS_KEY", "OBJ_PG_SECRET_KEY", "OBJ_REDIS_ACCESS_KEY", "OBJ_REDIS_SECRET_KEY"]
    assert result.stderr.splitlines()[-1].startswith("halgen build: these are stand-ins")


def test_build_with_real_answers_needs_no_flag(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text("domains: [shop.acme-corp.eu]\nadmin_email: ops@acme-corp.eu\nadmin_cidrs: [81.2.69.0/24]\n"
                       "admins:\n- name: ops\n  ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0aGVyZWFsa2V5Zm9yb3Bz ops@laptop']\n")
    repo = tmp_path / "repo"
    assert halgen("render", str(answers), "--out", str(repo)).returncode == 0
    values = _secrets(repo)
    secrets.write(repo, {**values, **PROVIDED_KEYS})
    result = halgen("build", str(repo))
    assert result.returncode == 0, result.stderr
    assert (repo / "build" / "user-data" / "db1.yaml").is_file()


# What each role reads, and why. A node with several roles (a Sentinel on an app or Redis
# node) may hold the union. Secrets no node holds in the clear: REDIS_ADMIN_PASSWORD
# (operators only; the nodes have its hash), and the app's Sentinel password is its Redis one.
ROLE_SECRETS = {
    "lb": set(),  # nginx needs no password (its TLS key is made on the node)
    "app": {"PG_APP_PASSWORD",  # the DSN's password
            "REDIS_APP_PASSWORD"},  # the app's user on Redis and on the Sentinels
    "db": {"PG_REPLICATION_PASSWORD",  # replicas' primary_conninfo via .pgpass
           "PG_APP_PASSWORD",  # pg-setup-primary sets the app role's password
           "PG_BACKUP_CIPHER_PASS", "OBJ_PG_ACCESS_KEY", "OBJ_PG_SECRET_KEY"},  # pgBackRest
    "redis": {"REDIS_REPLICATION_PASSWORD",  # masterauth: every Redis node may become a replica
              "REDIS_SNAPSHOT_PASSWORD",  # the backup job's redis-cli --rdb
              "REDIS_BACKUP_PASSWORD", "OBJ_REDIS_ACCESS_KEY", "OBJ_REDIS_SECRET_KEY"},  # restic
    "sentinel": {"SENTINEL_PASSWORD",  # sentinel-pass to the other Sentinels
                 "REDIS_SENTINEL_PASSWORD"},  # auth-user/auth-pass to Redis
    "patroni": {"PG_REWIND_PASSWORD",  # pg_rewind of a failed primary
                "PATRONI_API_PASSWORD"},  # its REST API's switchover and restart
    "mon": {"PG_MONITOR_PASSWORD", "REDIS_MONITOR_PASSWORD",  # the exporters' logins
            "ALERT_WEBHOOK_TOKEN"},  # Alertmanager's Bearer token (the SMTP password and dead man's URL are optional)
}
ROLE_SECRETS["db"] |= {"PG_MONITOR_PASSWORD"}  # pg-setup-primary sets the monitor role's password


@pytest.mark.parametrize("case", golden_cases())
def test_each_node_holds_only_the_secrets_its_roles_read(case: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", str(GOLDEN / case / "answers.yml"), "--out", str(repo)).returncode == 0
    secrets.write(repo, {**_secrets(repo), **PROVIDED_KEYS})
    built = halgen("build", str(repo), "--allow-placeholders")
    assert built.returncode == 0, built.stderr
    values = _secrets(repo)
    inventory = json.loads((repo / "inventory.json").read_text())["nodes"]
    seen: set[str] = set()
    for node in inventory:
        roles = ({node["role"]} | ({"sentinel"} if "redis-sentinel" in node["services"] else set())
                 | ({"patroni"} if "patroni" in node["services"] else set()))
        allowed = set().union(*(ROLE_SECRETS[role] for role in roles))
        document = (repo / "build" / "user-data" / f"{node['name']}.yaml").read_text()
        haystack = document.encode() + b"".join(content for content, *_ in cloudinit.unpack(document).values())
        held = {name for name, value in values.items() if value and value.encode() in haystack}
        assert held <= allowed, f"{node['name']} ({', '.join(sorted(roles))}) holds {sorted(held - allowed)}"
        assert held == allowed, f"{node['name']} lacks {sorted(allowed - held)}: the table above is stale"
        seen |= held
    assert "REDIS_ADMIN_PASSWORD" not in seen


def test_old_secret_names_are_migrated(tmp_path: Path) -> None:
    """A stack made before the per-tier secrets keeps its passwords, keys and backups."""
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    old = {"PG_REPLICATION_PASSWORD": secrets.new_secret(), "PG_APP_PASSWORD": secrets.new_secret(),
           "REDIS_PASSWORD": secrets.new_secret(), "BACKUP_CIPHER_PASS": secrets.new_secret(),
           "OBJ_ACCESS_KEY": "K" * 20, "OBJ_SECRET_KEY": "s" * 40}
    (repo / secrets.SECRETS_FILE).write_text("".join(f"{k}={v}\n" for k, v in old.items()))
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    new = _secrets(repo)
    assert set(new) == set(secrets.NAMES), "old names dropped, new ones made"
    assert new["PG_BACKUP_CIPHER_PASS"] == old["BACKUP_CIPHER_PASS"], "it encrypts the backups in the bucket"
    assert new["REDIS_APP_PASSWORD"] == old["REDIS_PASSWORD"]
    assert new["OBJ_PG_ACCESS_KEY"] == new["OBJ_REDIS_ACCESS_KEY"] == old["OBJ_ACCESS_KEY"]
    assert new["OBJ_PG_SECRET_KEY"] == new["OBJ_REDIS_SECRET_KEY"] == old["OBJ_SECRET_KEY"]
    for name in ("PG_REPLICATION_PASSWORD", "PG_APP_PASSWORD"):
        assert new[name] == old[name]
    fresh = {"REDIS_REPLICATION_PASSWORD", "REDIS_SENTINEL_PASSWORD", "SENTINEL_PASSWORD", "REDIS_BACKUP_PASSWORD"}
    assert len({new[name] for name in fresh} | set(old.values())) == len(fresh) + len(old)
    pgbackrest = (repo / "build/nodes/db1/etc/pgbackrest/conf.d/secrets.conf").read_text()
    assert f"repo1-cipher-pass={old['BACKUP_CIPHER_PASS']}" in pgbackrest


def test_migration_never_overwrites_a_new_name() -> None:
    values = {"OBJ_ACCESS_KEY": "old", "OBJ_REDIS_ACCESS_KEY": "scoped", "BACKUP_CIPHER_PASS": "x" * 32}
    assert secrets.migrate(values) == {"OBJ_PG_ACCESS_KEY": "old", "OBJ_REDIS_ACCESS_KEY": "scoped",
                                       "PG_BACKUP_CIPHER_PASS": "x" * 32}
