"""Living with a generated repo: scale it, and see where it stands against its blueprint.

Both drive copier on the repo itself (it must be a git repo made by ``halgen new`` or
``copier copy``), so local edits are merged, never lost.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import answers as answers_io
from . import compiler
from .model import node_names
from .problems import AnswersError

SCALABLE = {"app": "app_servers"}  # role -> the answer that counts its nodes
UNTRACKED = ("secrets", "build", ".git")


class JourneyError(Exception):
    """A repo that cannot take the step (not copier-made, dirty, ...); the CLI exits 2."""


def recorded(repo: Path) -> dict[str, Any]:
    path = repo / ".copier-answers.yml"
    if not path.is_file():
        raise JourneyError(f"{repo}: no .copier-answers.yml; was it made by 'halgen new' or 'copier copy'?")
    return answers_io.load(path).data


def _require_clean_git(repo: Path) -> None:
    result = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise JourneyError(f"{repo}: not a git repository (copier update needs one): git init && git add -A && commit")
    if result.stdout.strip():
        raise JourneyError(f"{repo}: has uncommitted changes; commit or stash them first (copier update needs it)")


@dataclass(frozen=True)
class ScalePlan:
    role: str
    before: int
    after: int
    removed_nodes: list[str]


def plan_scale(repo: Path, role: str, count: int) -> tuple[ScalePlan, dict[str, Any]]:
    """Validate the new count against every rule before anything runs."""
    if role not in SCALABLE:
        raise JourneyError(f"cannot scale '{role}' yet (scalable: {', '.join(SCALABLE)})")
    data = recorded(repo)
    own = {k: v for k, v in data.items() if not k.startswith("_")}
    key = SCALABLE[role]
    before = compiler.complete_answers(answers_io.from_mapping(own, str(repo / ".copier-answers.yml")))
    after = compiler.complete_answers(answers_io.from_mapping({**own, key: count}, f"{key}={count}"))
    gone = sorted(set(node_names(before)[role]) - set(node_names(after)[role]), key=lambda n: int(n[len(role):]))
    return ScalePlan(role, before[key], count, gone), after


def scale(repo: Path, role: str, count: int, confirm: Callable[[str], bool]) -> ScalePlan:
    repo = repo.resolve()
    plan, _ = plan_scale(repo, role, count)
    _require_clean_git(repo)
    existing = [n for n in plan.removed_nodes if (repo / "nodes" / n).exists()]
    if existing and not confirm(f"Scaling {role} from {plan.before} to {count} removes the files of "
                                f"{', '.join(existing)} (nodes/{existing[0]}/ ...). Continue?"):
        raise JourneyError("nothing changed")
    from copier import run_update
    from copier._types import VcsRef

    # At the version the repo records: scaling must not also pull a blueprint upgrade.
    run_update(str(repo), data={SCALABLE[role]: count}, defaults=True, overwrite=True, quiet=True, unsafe=True,
               vcs_ref=VcsRef.CURRENT)
    return plan


@dataclass
class Status:
    version: str
    source: str
    latest: str | None
    update_available: bool | None
    edited: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def status(repo: Path) -> Status:
    """Blueprint version in use, whether a newer one exists, and local edits against a
    fresh render of the repo's answers at the version it records."""
    repo = repo.resolve()
    data = recorded(repo)
    source, version = data.get("_src_path"), data.get("_commit")
    if not source or not version:
        raise JourneyError(f"{repo}: its answers record no blueprint source (_src_path/_commit); "
                           "'halgen render' output is not copier-managed")
    from copier import run_copy
    from copier._main import get_update_data

    try:
        update_available, _, latest = get_update_data(repo)
    except Exception as err:  # no tags, unreachable source: say so, do not fail
        update_available, latest = None, f"unknown ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    own = {k: v for k, v in data.items() if not k.startswith("_")}
    with tempfile.TemporaryDirectory(prefix="halgen-status-") as tmp:
        fresh = Path(tmp) / "fresh"
        run_copy(str(source), str(fresh), data=own, defaults=True, quiet=True, unsafe=True, vcs_ref=str(version))
        theirs, ours = _files(fresh), _files(repo)
    report = Status(version=str(version), source=str(source), latest=latest, update_available=update_available)
    shared = (ours.keys() & theirs.keys()) - {".copier-answers.yml"}
    report.edited = sorted(p for p in shared if ours[p] != theirs[p])
    report.added = sorted(ours.keys() - theirs.keys())
    report.missing = sorted(theirs.keys() - ours.keys())
    return report


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in UNTRACKED}


__all__ = ["AnswersError", "JourneyError", "ScalePlan", "Status", "plan_scale", "scale", "status"]
