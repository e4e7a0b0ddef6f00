"""halgen render: full validation first, staging, checks, atomic move, refusal to clobber."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from halgen.compiler import pipeline, resources
from halgen.compiler.write import render
from halgen.errors import RenderError

from conftest import GOLDEN, halgen, tree


def test_render_defaults_via_cli(tmp_path: Path) -> None:
    result = halgen("render", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "nodes" / "lb1" / "etc" / "nginx" / "nginx.conf").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no staging directory left behind"


def test_refuses_non_empty_dir_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = halgen("render", str(GOLDEN / "minimal" / "answers.yml"), "--out", str(out))
    assert result.returncode == 2
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert (out / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_force_replaces_whole_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    result = halgen("render", str(GOLDEN / "minimal" / "answers.yml"), "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert not (out / "stale.txt").exists()
    assert tree(out) == tree(GOLDEN / "minimal" / "expected")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_empty_existing_dir_is_fine(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    render(pipeline.default_answers(), tmp_path / "out")
    assert (tmp_path / "out" / "README.md").is_file()


def test_out_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    result = halgen("render", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "is a file" in result.stderr


@pytest.fixture
def broken_blueprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the blueprint whose nginx template has a misspelt directive."""
    root = tmp_path / "tpl"
    root.mkdir()
    shutil.copy2(resources.template_root() / "copier.yml", root / "copier.yml")
    shutil.copytree(resources.template_root() / "blueprints", root / "blueprints")
    (conf,) = root.glob("blueprints/stack/nodes/*/etc/nginx/nginx.conf.jinja")
    conf.write_text(conf.read_text().replace("proxy_http_version 1.1;", "proxy_http_verison 1.1;"))
    monkeypatch.setattr(resources, "template_root", lambda: root)
    return root


def test_crossplane_error_aborts_with_file_and_line(broken_blueprint: Path, tmp_path: Path) -> None:
    with pytest.raises(RenderError) as err:
        render(pipeline.default_answers(), tmp_path / "out")
    message = str(err.value)
    assert "nodes/lb1/etc/nginx/nginx.conf:" in message
    assert 'unknown directive "proxy_http_verison"' in message
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tpl"]


def test_every_node_program_is_executable() -> None:
    """The blueprint's file modes become the node's (copier keeps them): a script the
    first boot runs must be executable (the boot test caught one that was not)."""
    for case in ("default-ha", "tls-sync"):
        programs = [p for p in (GOLDEN / case / "expected" / "nodes").glob("*/usr/local/sbin/*")]
        assert programs
        not_executable = [str(p) for p in programs if not p.stat().st_mode & 0o100]
        assert not not_executable, not_executable
