"""Every golden case renders to exactly its expected tree (no missing, extra or changed file).

Rewrite expectations only on purpose: pytest --update-golden.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from halgen.compiler import pipeline
from halgen.compiler.write import render

from conftest import GOLDEN, UNTRACKED, golden_cases, tree


def _render_case(case: str, dest: Path) -> dict[str, bytes]:
    answers = pipeline.load_answers(GOLDEN / case / "answers.yml")
    render(answers, dest)
    return tree(dest)


def test_golden_cases_exist() -> None:
    assert {"minimal", "default-ha", "large", "tls-sync"} <= set(golden_cases())


@pytest.mark.parametrize("case", golden_cases())
def test_golden(case: str, tmp_path: Path, update_golden: bool) -> None:
    expected_dir = GOLDEN / case / "expected"
    actual = _render_case(case, tmp_path / "out")
    if update_golden:
        shutil.rmtree(expected_dir, ignore_errors=True)
        shutil.copytree(tmp_path / "out", expected_dir, ignore=lambda d, names: UNTRACKED if Path(d) == tmp_path / "out" else ())
    expected = tree(expected_dir)
    assert sorted(actual) == sorted(expected), "missing or extra files"
    changed = [name for name in actual if actual[name] != expected[name]]
    assert not changed, f"files differ from golden/{case}/expected: {changed} (pytest --update-golden if intended)"


@pytest.mark.parametrize("case", golden_cases())
def test_file_modes_match(case: str, tmp_path: Path) -> None:
    _render_case(case, tmp_path / "out")
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.relative_to(tmp_path / "out").parts[0] not in UNTRACKED:
            golden = GOLDEN / case / "expected" / path.relative_to(tmp_path / "out")
            assert (path.stat().st_mode & 0o111 != 0) == (golden.stat().st_mode & 0o111 != 0), path


def test_render_is_deterministic(tmp_path: Path) -> None:
    first = _render_case("large", tmp_path / "a")
    second = _render_case("large", tmp_path / "b")
    assert first == second
