"""The generated CI workflow installs halgen only from the source the answers pin
(ci_halgen_source: a git commit or the user's own index), never by name from the
public PyPI, where "halgen" is not a name this project owns. Unset, the job stops
at its first step and says what to set."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from ruamel.yaml import YAML

from halgen import __version__
from halgen.compiler import pipeline
from halgen.compiler.write import render

from conftest import GOLDEN, golden_cases, halgen

WORKFLOW = ".github/workflows/halgen-lint.yml"
COMMIT = "4f2c9a7e1b3d5f6081a2b4c6d8e0f1a3b5c7d9e1"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHardeningCiCaseKey0000000000000000000000 t@t"


def _workflow(tmp_path: Path, source: str | None) -> dict[str, Any]:
    answers = tmp_path / "answers.yml"
    answers.write_text("project: shop\n" + (f"ci_halgen_source: '{source}'\n" if source is not None else ""))
    out = tmp_path / "out"
    render(pipeline.load_answers(answers), out)
    data: dict[str, Any] = YAML(typ="safe").load((out / WORKFLOW).read_text())
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _pip_lines(workflow: dict[str, Any]) -> list[str]:
    return [line.strip() for step in _steps(workflow) for line in step.get("run", "").splitlines()
            if "pip install" in line]


def test_unset_source_stops_the_job_first_and_says_what_to_set(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path, None)
    assert _pip_lines(workflow) == [], "nothing may be installed from an unpinned source"
    first = _steps(workflow)[0]
    result = subprocess.run(["bash", "-e", "-c", first["run"]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stdout.startswith("::error file=.copier-answers.yml::ci_halgen_source is empty")
    # The later steps do not run: lint needs the install step, SARIF asks whether it succeeded.
    later = {step.get("name"): step for step in _steps(workflow)}
    assert "if" not in later["halgen lint"]
    assert "steps.install.outcome == 'success'" in later["Findings as SARIF"]["if"]


def test_git_source_installs_that_commit(tmp_path: Path) -> None:
    source = f"git+https://git.example.com/ops/halgen@{COMMIT}"
    (line,) = _pip_lines(_workflow(tmp_path, source))
    quoted = re.fullmatch(r'python -m pip install "([^"]+)"', line)
    assert quoted is not None, line
    requirement = Requirement(quoted.group(1))
    assert requirement.name == "halgen" and requirement.url == source


def test_index_source_installs_this_version_from_that_index_only(tmp_path: Path) -> None:
    (line,) = _pip_lines(_workflow(tmp_path, "https://pypi.internal.example/simple/"))
    assert line == f'python -m pip install --index-url "https://pypi.internal.example/simple/" "halgen=={__version__}"'
    assert "--extra-index-url" not in line, "a second index would let the public one win"


@pytest.mark.parametrize("case", golden_cases())
def test_no_golden_workflow_installs_halgen_by_name_from_pypi(case: str) -> None:
    workflow = YAML(typ="safe").load((GOLDEN / case / "expected" / WORKFLOW).read_text())
    for line in _pip_lines(workflow):
        assert re.search(r'"halgen @ git\+https://\S+@[0-9a-f]{40}"$', line) or (
            "--index-url" in line and "pypi.org" not in line), line
        assert "--extra-index-url" not in line


@pytest.mark.parametrize("source, words", [
    ("halgen==0.1.0", "is not allowed: must be"),
    ("git+https://git.example.com/ops/halgen@main", "is not allowed: must be"),
    ("git+https://git.example.com/ops/halgen@v0.1.0", "is not allowed: must be"),
    ("https://pypi.org/simple/", "is not allowed: must be"),
    ("https://test.pypi.org/simple/", "is not allowed: must be"),
    ("https://files.pythonhosted.org/packages/", "is not allowed: must be"),
    ("http://pypi.internal.example/simple/", "is not allowed: must be"),
    ("https://ci:token@pypi.internal.example/simple/", "is not allowed: must be"),
])
def test_unowned_or_unpinned_sources_are_refused(tmp_path: Path, source: str, words: str) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text(f"project: shop\nadmins:\n  - name: ops\n    ssh_keys: ['{KEY}']\nci_halgen_source: '{source}'\n")
    result = halgen("check", str(answers))
    assert result.returncode == 2, result.stdout
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{answers}:5: ci_halgen_source: ") and words in first, first
    assert "git+https://HOST/PATH@COMMIT" in first, "the message shows the accepted forms"
