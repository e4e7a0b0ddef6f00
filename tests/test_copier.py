"""halgen new and plain copier copy give the same tree from the same blueprint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from halgen.compiler import resources

from conftest import GOLDEN, REPO, golden_cases, halgen, tree


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def blueprint_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo holding this working tree's blueprint, tagged like a release."""
    root = tmp_path_factory.mktemp("blueprint")
    shutil.copy2(REPO / "copier.yml", root / "copier.yml")
    shutil.copytree(REPO / "blueprints", root / "blueprints")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "blueprint")
    _git(root, "tag", "v0.1.0")
    return root


def _without_source(files: dict[str, bytes]) -> dict[str, bytes]:
    answers = files[".copier-answers.yml"].decode().splitlines(keepends=True)
    return {**files, ".copier-answers.yml": "".join(line for line in answers if not line.startswith("_src_path:")).encode()}


def test_halgen_new_equals_copier_copy(blueprint_clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copier = subprocess.run([sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
                             str(blueprint_clone), str(tmp_path / "demo2")], capture_output=True, text=True)
    assert copier.returncode == 0, copier.stderr

    from click.testing import CliRunner

    from halgen.cli import main

    monkeypatch.setattr(resources, "template_root", lambda: blueprint_clone)
    result = CliRunner().invoke(main, ["new", str(tmp_path / "demo"), "--defaults"])
    assert result.exit_code == 0, result.output

    demo, demo2 = tree(tmp_path / "demo"), tree(tmp_path / "demo2")
    assert sorted(demo) == sorted(demo2)
    assert _without_source(demo) == _without_source(demo2)
    recorded = (tmp_path / "demo" / ".copier-answers.yml").read_text()
    assert "_commit: v0.1.0" in recorded and f"_src_path: {blueprint_clone}" in recorded


@pytest.mark.parametrize("case", golden_cases())
def test_copier_copy_equals_halgen_render(case: str, blueprint_clone: Path, tmp_path: Path) -> None:
    """Both engines give the same tree for every golden case (the expected trees are
    halgen render's output: test_golden)."""
    copier = subprocess.run([sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
                             "--data-file", str(GOLDEN / case / "answers.yml"), str(blueprint_clone),
                             str(tmp_path / "copied")], capture_output=True, text=True)
    assert copier.returncode == 0, copier.stderr
    copied, rendered = tree(tmp_path / "copied"), tree(GOLDEN / case / "expected")
    copied_answers = copied.pop(".copier-answers.yml").decode()
    rendered_answers = rendered.pop(".copier-answers.yml").decode()
    assert sorted(copied) == sorted(rendered)
    assert copied == rendered
    kept = [line for line in copied_answers.splitlines() if not line.startswith(("_src_path", "_commit"))]
    assert kept == rendered_answers.splitlines()


def test_new_with_answers_matches_render(blueprint_clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from halgen.cli import main

    monkeypatch.setattr(resources, "template_root", lambda: blueprint_clone)
    result = CliRunner().invoke(main, ["new", str(tmp_path / "demo"), "--answers", str(GOLDEN / "large" / "answers.yml")])
    assert result.exit_code == 0, result.output
    new_tree = tree(tmp_path / "demo")
    golden = tree(GOLDEN / "large" / "expected")
    new_answers = new_tree.pop(".copier-answers.yml").decode()
    golden_answers = golden.pop(".copier-answers.yml").decode()
    assert new_tree == golden, "new and render must produce the same files"
    kept = [line for line in new_answers.splitlines() if not line.startswith(("_src_path", "_commit"))]
    assert kept == golden_answers.splitlines()


def test_new_refuses_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "x").write_text("mine")
    result = halgen("new", str(tmp_path / "demo"), "--defaults")
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (tmp_path / "demo" / "x").read_text() == "mine"


def test_new_rejects_bad_answers_before_copier(tmp_path: Path) -> None:
    answers = tmp_path / "a.yml"
    answers.write_text("app_servers: 0\n")
    result = halgen("new", str(tmp_path / "demo"), "--answers", str(answers))
    assert result.returncode == 2 and f"{answers}:1: app_servers:" in result.stderr
    assert not (tmp_path / "demo").exists()


def test_copier_copy_from_the_repo_itself(tmp_path: Path) -> None:
    """The issue's own check: copier copy --trust --defaults <clone of this repo>."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if not (clone / "copier.yml").exists():
        pytest.skip("the repo has no commit with the blueprint yet")
    result = subprocess.run([sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
                             str(clone), str(tmp_path / "demo2")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "demo2" / "nodes" / "lb1" / "etc" / "nginx" / "nginx.conf").is_file()
