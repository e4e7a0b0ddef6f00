"""Mutated copies of golden repos, one defect each, and the rule that must flag it.

Each rule's failing fixtures are its mutations; its passing fixture is the
unmutated golden case (every golden case lints clean). The defects are data in
halgen.lint.examples (the rule docs show them as Example and Fix); this module
makes each one a Mutation that applies it to a repo."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from halgen.lint.examples import CHANGES, DEFAULT_CASE, TOOL_CHANGES, Change


@dataclass(frozen=True)
class Mutation:
    rule: str
    name: str
    apply: Callable[[Path], None]
    case: str = DEFAULT_CASE
    change: Change | None = None  # the data it was made from

    @property
    def id(self) -> str:
        return f"{self.rule}-{self.name}"


def edit(rel: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    """Replace text in one file; the old text must be there, so a mutation cannot rot silently."""

    def apply(root: Path) -> None:
        path = _resolve(root, rel)
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, count))

    return apply


def append(rel: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = _resolve(root, rel)
        path.write_text(path.read_text() + text)

    return apply


def write(rel: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    return apply


def track(rel: str, text: str) -> Callable[[Path], None]:
    """Write the file and make the repo a git repo tracking it, as `git add -f` would."""

    def apply(root: Path) -> None:
        write(rel, text)(root)
        git = ["git", "-c", f"safe.directory={root}", "-C", str(root)]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-f", rel], check=True)

    return apply


def remove(rel: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = _resolve(root, rel)
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def _resolve(root: Path, rel: str) -> Path:
    """rel may hold one glob part (the PostgreSQL version directory, say)."""
    matches = sorted(root.glob(rel))
    assert matches, f"nothing matches {rel} in {root}"
    return matches[0]


def in_turn(steps: list[Callable[[Path], None]]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        for step in steps:
            step(root)

    return apply


def applier(change: Change) -> Callable[[Path], None]:
    if change.also:
        return in_turn([applier(replace(change, also=())), *map(applier, change.also)])
    if change.kind == "edit":
        return edit(change.file, change.old, change.new, change.count)
    if change.kind == "append":
        return append(change.file, change.new)
    if change.kind == "write":
        return write(change.file, change.new)
    if change.kind == "track":
        return track(change.file, change.new)
    assert change.kind == "remove", change
    return remove(change.file)


def mutation(change: Change) -> Mutation:
    return Mutation(change.rule, change.name, applier(change), change.case, change)


MUTATIONS = [mutation(c) for c in CHANGES]

# Defects only the real programs see (the file rules pass them).
TOOL_MUTATIONS = [mutation(c) for c in TOOL_CHANGES]
