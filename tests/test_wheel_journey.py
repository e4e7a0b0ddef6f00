"""The update journey from an installed wheel, as users run it: build halgen's wheel,
install it into a fresh venv, make a stack with 'halgen new', then upgrade halgen to a
newer release built here and bring the blueprint change into the stack with
'halgen status', 'copier update' and 'halgen scale'."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _git(cwd: Path, *args: str) -> str:
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd).stdout


def _release(src: Path, version: str, dist: Path) -> Path:
    """Tag the source as a release of that version and build its wheel."""
    for rel in ("pyproject.toml", "generator/halgen/__init__.py"):
        path = src / rel
        path.write_text(re.sub(r'(?m)^((?:__)?version(?:__)? = ")[^"]+"', rf'\g<1>{version}"', path.read_text()))
    _git(src, "commit", "-qam", f"release {version}", "--allow-empty")
    _git(src, "tag", f"v{version}")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)])
    (wheel,) = dist.glob(f"halgen-{version}-*.whl")
    return wheel


@pytest.mark.realserver
def test_a_stack_from_a_wheel_installed_halgen_updates_to_the_next_release(tmp_path: Path, record_property) -> None:
    times: dict[str, float] = {}
    started = time.monotonic()
    src, dist, venv, stack = tmp_path / "src", tmp_path / "dist", tmp_path / "venv", tmp_path / "stack"
    _run(["git", "clone", "--quiet", str(REPO), str(src)])
    wheel1 = _release(src, "0.1.0", dist)
    times["build wheel"] = time.monotonic() - started

    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel1)])
    times["install into a fresh venv"] = time.monotonic() - started - sum(times.values())
    env = {**os.environ, "HALGEN_CACHE": str(tmp_path / "cache"), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    halgen = str(venv / "bin" / "halgen")
    installed = _run([str(venv / "bin" / "python"), "-c", "import halgen, pathlib; print(pathlib.Path(halgen.__file__))"],
                     env=env).stdout
    assert "site-packages" in installed, "the test must run the installed halgen, not this checkout"

    _run([halgen, "new", str(stack), "--defaults"], cwd=tmp_path, env=env)
    answers = (stack / ".copier-answers.yml").read_text()
    assert "_commit: v0.1.0" in answers and f"_src_path: {tmp_path / 'cache' / 'blueprint'}" in answers
    _git(stack, "init", "-q", "-b", "main")
    _git(stack, "add", "-A")
    _git(stack, "commit", "-qm", "made by halgen 0.1.0")
    times["halgen new"] = time.monotonic() - started - sum(times.values())

    # the next release: a blueprint fix users must receive
    node_doc = next((src / "blueprints" / "stack" / "nodes").glob("*/NODE.md.jinja"))
    node_doc.write_text(node_doc.read_text() + "\nFixed in 0.2.0.\n")
    _git(src, "commit", "-qam", "blueprint fix")
    wheel2 = _release(src, "0.2.0", dist)
    _run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel2)])
    times["build and install 0.2.0"] = time.monotonic() - started - sum(times.values())

    status = _run([halgen, "status", str(stack)], env=env).stdout
    assert "at v0.1.0" in status and "yes: 0.2.0" in status and "edited" not in status, status
    _run([halgen, "scale", "app", "4", "--repo", str(stack), "--yes"], env=env)
    assert (stack / "nodes" / "app4").is_dir()
    assert "Fixed in 0.2.0." not in (stack / "nodes" / "app1" / "NODE.md").read_text(), "scale keeps the version"
    _git(stack, "add", "-A")
    _git(stack, "commit", "-qm", "scaled")
    _run([str(venv / "bin" / "copier"), "update", "--trust", "--defaults", "--quiet"], cwd=stack, env=env)
    assert "Fixed in 0.2.0." in (stack / "nodes" / "app1" / "NODE.md").read_text()
    assert "_commit: v0.2.0" in (stack / ".copier-answers.yml").read_text()
    times["status, scale, copier update"] = time.monotonic() - started - sum(times.values())
    record_property("wheel_journey_s", {k: round(v, 1) for k, v in times.items()})
    print("wheel journey:", ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
