"""Every error path of the command line: exit 2, one line that says what to do, no traceback."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import halgen


def _one_clean_line(result_stderr: str) -> str:
    assert "Traceback" not in result_stderr
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_new_with_an_unknown_vcs_ref(tmp_path: Path) -> None:
    result = halgen("new", str(tmp_path / "stack"), "--defaults", "--vcs-ref", "NO-SUCH-REF")
    assert result.returncode == 2
    assert _one_clean_line(result.stderr) == "halgen new: --vcs-ref NO-SUCH-REF: the blueprint has no such tag, " \
                                             "branch or commit"
    assert not (tmp_path / "stack").exists()


def test_new_into_a_non_empty_directory_names_the_real_way_out(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    result = halgen("new", str(tmp_path), "--defaults")
    assert result.returncode == 2
    line = _one_clean_line(result.stderr)
    assert "directory is not empty" in line and "--force" not in line and "copier update" in line
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_lint_outside_a_stack_repo_says_so_at_once(tmp_path: Path) -> None:
    for i in range(200):  # a big tree it must not walk
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "f.conf").write_text("x\n")
    started = time.monotonic()
    result = halgen("lint", str(tmp_path))
    assert time.monotonic() - started < 5  # the process start dominates; no walk happens
    assert result.returncode == 2
    assert "not a halgen stack repo" in _one_clean_line(result.stderr)


def test_render_into_a_file(tmp_path: Path) -> None:
    """A usage error click itself catches: its usage text, exit 2, no traceback."""
    (tmp_path / "file").write_text("x")
    result = halgen("render", "--out", str(tmp_path / "file"))
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr


def test_explain_and_lint_explain_unknown_names(tmp_path: Path) -> None:
    for args, words in ((["explain", "lb_keepalvie"], "Did you mean: lb_keepalive"),
                        (["lint", "--explain", "HAL999"], "no rule 'HAL999'")):
        result = halgen(*args)
        assert result.returncode == 2 and words in _one_clean_line(result.stderr)
