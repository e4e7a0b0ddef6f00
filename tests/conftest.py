from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden/*/expected from the current blueprint")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def require(*programs: str) -> None:
    """Skip when a real program is missing, except in CI, where that is a failure."""
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install them; see .ci/run)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def halgen(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, the way users do."""
    return subprocess.run([sys.executable, "-m", "halgen.cli", *args], cwd=cwd, input=input,
                          capture_output=True, text=True, timeout=120)


def golden_cases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "answers.yml").is_file())


UNTRACKED = ("secrets", "build")  # gitignored in a generated repo: random or secret-bearing


def tree(root: Path) -> dict[str, bytes]:
    """The tracked files of a generated repo, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in UNTRACKED}


def blueprint_repo(root: Path, tag: str = "v1.0.0") -> Path:
    """A git repo under ``root`` holding this working tree's blueprint, tagged like a release."""
    bp = root / "blueprint"
    bp.mkdir()
    shutil.copy2(REPO / "copier.yml", bp / "copier.yml")
    shutil.copytree(REPO / "blueprints", bp / "blueprints")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", tag], ["tag", tag]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=bp, check=True,
                       capture_output=True)
    return bp


def bare_app_repo(where: Path, psgi: str, files: dict[str, str] | None = None) -> Path:
    """A bare git repo at ``where``/app.git with one commit of app.psgi (and ``files``):
    an app_repo."""
    work, bare = where / "work", where / "app.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for name, text in {"app.psgi": psgi, **(files or {})}.items():
        (work / name).write_text(text)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "app"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def git_sshd_config(directory: Path, listen: str, host_key: Path, authorized: str) -> Path:
    """An sshd config for a test git server on ``listen`` (ADDRESS:PORT) that lets in
    only the ``authorized`` keys (root, key only), with its files in ``directory``."""
    (directory / "authorized_keys").write_text(authorized)
    config = directory / "sshd_config"
    config.write_text(f"ListenAddress {listen}\nHostKey {host_key}\nAuthorizedKeysFile {directory}/authorized_keys\n"
                      "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n"
                      f"PidFile {directory}/sshd.pid\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return config
