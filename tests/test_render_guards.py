"""What render refuses or adapts so that its output always starts: long server names,
SSH open to everyone only when the answers say so, one listener per port."""

from __future__ import annotations

from pathlib import Path

import pytest

from halgen.compiler import pipeline
from halgen.compiler.loader import from_mapping
from halgen.compiler.write import render
from halgen.lint import lint

from conftest import require


def _long_name(length: int) -> str:
    """A valid DNS name of exactly ``length`` characters (labels of at most 63)."""
    labels, left = [], length - 4  # '.com'
    while left > 63:
        labels.append("a" * 62)
        left -= 63
    labels.append("b" * left)
    name = ".".join(labels) + ".com"
    assert len(name) == length
    return name


@pytest.mark.realserver
@pytest.mark.parametrize("length", [46, 47, 63, 120, 253])
def test_any_valid_domain_starts_nginx(length: int, tmp_path: Path) -> None:
    require("nginx")
    answers = pipeline.complete_answers(from_mapping({"domains": [_long_name(length), "www.example.com"]}))
    repo = render(answers, tmp_path / "repo")
    report = lint(repo, select={"HAL501"})  # nginx -t on every load balancer's config
    assert report.rules_run and report.findings == [], [f.message for f in report.findings]


def test_ssh_open_to_everyone_renders_only_when_accepted(tmp_path: Path) -> None:
    answers = pipeline.complete_answers(from_mapping({"admin_cidrs": ["0.0.0.0/1", "128.0.0.0/1"],
                                                      "admin_cidrs_allow_internet": True}))
    repo = render(answers, tmp_path / "repo")
    assert lint(repo, tools=False).findings == []
    jail = next((repo / "nodes" / "app1" / "etc" / "fail2ban" / "jail.d").iterdir()).read_text()
    assert "ignoreip = 127.0.0.1/8 ::1\n" in jail, "fail2ban must not ignore the whole Internet"


def test_render_refuses_a_tree_its_own_lint_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blueprint defect that no answer check can see (here: every node's firewall lets
    everything in) stops the render with the lint's lines, exit 2, and nothing at --out."""
    import shutil

    from click.testing import CliRunner

    from halgen.cli import main
    from halgen.compiler import resources

    from conftest import REPO

    template = tmp_path / "template"
    template.mkdir()
    shutil.copy2(REPO / "copier.yml", template / "copier.yml")
    shutil.copytree(REPO / "blueprints", template / "blueprints")
    boot = next((template / "blueprints" / "stack" / "nodes").rglob("*-first-boot.jinja"))
    boot.write_text(boot.read_text().replace("ufw default deny incoming", "ufw default allow incoming"))
    monkeypatch.setattr(resources, "template_root", lambda: template)
    result = CliRunner().invoke(main, ["render", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "fails its own checks; nothing was written" in result.output
    assert "nodes/lb1/usr/local/sbin/perlstack-first-boot" in result.output and "HAL308 error" in result.output
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["template"]
