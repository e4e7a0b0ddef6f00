"""Secrets: random (>= 128 bits), made once, kept across re-renders, never in tracked files."""

from __future__ import annotations

import math
import stat
from pathlib import Path

from halgen.compiler import secrets

from conftest import GOLDEN, halgen, tree


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
    assert f"requirepass {_secrets(repo)['REDIS_PASSWORD']}" in redis_conf
    assert ".gitignore" in tree(repo) and b"/secrets/" in tree(repo)[".gitignore"]


def test_a_missing_secret_is_added_and_the_others_kept(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    before = _secrets(repo)
    kept = {k: v for k, v in before.items() if k != "REDIS_PASSWORD"}
    secrets.write(repo, kept)
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    after = _secrets(repo)
    assert {k: after[k] for k in kept} == kept
    assert after["REDIS_PASSWORD"] != before["REDIS_PASSWORD"]


def test_malformed_secrets_file_is_a_clean_error(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert halgen("render", "--out", str(repo)).returncode == 0
    (repo / secrets.SECRETS_FILE).write_text("REDIS_PASSWORD=short\n")
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
                      "OBJ_ACCESS_KEY", "OBJ_SECRET_KEY"]
    assert result.stderr.splitlines()[-1].startswith("halgen build: these are stand-ins")


def test_build_with_real_answers_needs_no_flag(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text("domains: [shop.acme-corp.eu]\nadmin_email: ops@acme-corp.eu\nadmin_cidrs: [81.2.69.0/24]\n"
                       "admins:\n- name: ops\n  ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0aGVyZWFsa2V5Zm9yb3Bz ops@laptop']\n")
    repo = tmp_path / "repo"
    assert halgen("render", str(answers), "--out", str(repo)).returncode == 0
    values = _secrets(repo)
    secrets.write(repo, {**values, "OBJ_ACCESS_KEY": "A" * 20, "OBJ_SECRET_KEY": "b" * 40})
    result = halgen("build", str(repo))
    assert result.returncode == 0, result.stderr
    assert (repo / "build" / "user-data" / "db1.yaml").is_file()
