"""The READMEs say what the code does: their examples and commands run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO, blueprint_repo, halgen

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def test_readme_error_example_is_what_halgen_check_prints(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Answers and errors"):]
    (_, answers), (_, expected) = [b for b in _blocks(section)[:2]]
    (tmp_path / "answers.yml").write_text(answers)
    result = halgen("check", "answers.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == expected


def test_readme_two_commands_are_the_makefile_targets() -> None:
    blocks = [code for lang, code in _blocks((REPO / "README.md").read_text()) if lang == "sh"]
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_commands_that_run_offline(tmp_path: Path) -> None:
    """Every 'halgen check|explain|schema|render|lint' command quoted in the README runs as written
    (answer files and repo names mapped to a golden case and a fresh render)."""
    text = (REPO / "README.md").read_text()
    quoted = set(re.findall(r"`(halgen (?:explain|schema|check|lint --list-rules|lint --explain)[^`]*)`", text))
    assert quoted, "the README quotes halgen commands"
    (tmp_path / "answers.yml").write_text((REPO / "golden" / "default-ha" / "answers.yml").read_text())
    for command in sorted(quoted):
        argv = [("answers.yml" if word in {"ANSWERS", "answers.yml"} else word) for word in shlex.split(command)[1:]]
        if "FIELD" in argv or "ID" in argv:
            continue  # a placeholder, not a command
        result = halgen(*argv, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_generated_readme_update_command_works_as_written(tmp_path: Path) -> None:
    """The command the generated README gives for changing an answer: at the recorded
    blueprint version, with --trust, in a clean tree."""
    blueprint = blueprint_repo(tmp_path)
    stack = tmp_path / "stack"
    copied = subprocess.run([sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet",
                             str(blueprint), str(stack)], capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    _git(stack, "init", "-q", "-b", "main")
    _git(stack, "add", "-A")
    _git(stack, "commit", "-qm", "generated")
    # a newer blueprint release exists: the command must not pull it
    (blueprint / "blueprints" / "stack" / "NEW.md").write_text("new\n")
    _git(blueprint, "add", "-A")
    _git(blueprint, "commit", "-qm", "v2")
    _git(blueprint, "tag", "v2.0.0")

    readme = (stack / "README.md").read_text()
    command = re.search(r"`(copier update [^`]*--data KEY=VALUE)`", readme.replace("\n", " "))
    assert command, "the generated README gives the update command"
    argv = shlex.split(command.group(1).replace("KEY=VALUE", "app_servers=4"))
    result = subprocess.run([sys.executable, "-m", *argv], cwd=stack, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (stack / "nodes" / "app4").is_dir()
    assert not (stack / "NEW.md").exists(), "the blueprint version stayed the recorded one"
    assert "_commit: v1.0.0" in (stack / ".copier-answers.yml").read_text()
