"""Scale a tier of a generated repo through ``copier update`` at the blueprint version it
records, so local edits are merged, never lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from halgen.compiler import loader, pipeline
from halgen.compiler.answers import Answers
from halgen.compiler.model import node_names
from halgen.compiler.write import TreeCheck
from halgen.journeys.copierrepo import (
    ANSWERS_FILE,
    JourneyError,
    copier_failure,
    own_answers,
    recorded,
    require_clean_git,
    restore_clean_git,
)
from halgen.journeys.source import refresh_source

SCALABLE = {"app": "app_servers"}  # role -> the answer that counts its nodes


@dataclass(frozen=True)
class ScalePlan:
    role: str
    before: int
    after: int
    removed_nodes: list[str]


def plan_scale(repo: Path, role: str, count: int) -> tuple[ScalePlan, Answers]:
    """Validate the new count against every rule before anything runs."""
    if role not in SCALABLE:
        raise JourneyError(f"cannot scale '{role}' yet (scalable: {', '.join(SCALABLE)})")
    own = own_answers(recorded(repo))
    key = SCALABLE[role]
    before = pipeline.complete_answers(loader.from_mapping(own, str(repo / ANSWERS_FILE)))
    after = pipeline.complete_answers(loader.from_mapping({**own, key: count}, f"{key}={count}"))
    gone = sorted(set(node_names(before)[role]) - set(node_names(after)[role]), key=lambda n: int(n[len(role):]))
    return ScalePlan(role, getattr(before, key), count, gone), after


def scale(repo: Path, role: str, count: int, confirm: Callable[[str], bool],
          check: TreeCheck | None = None) -> ScalePlan:
    repo = repo.resolve()
    plan, _ = plan_scale(repo, role, count)
    require_clean_git(repo)
    refresh_source(recorded(repo))
    existing = [n for n in plan.removed_nodes if (repo / "nodes" / n).exists()]
    if existing and not confirm(f"Scaling {role} from {plan.before} to {count} removes the files of "
                                f"{', '.join(existing)} (nodes/{existing[0]}/ ...). Continue?"):
        raise JourneyError("nothing changed")
    from copier import VcsRef, run_update

    # At the version the repo records: scaling must not also pull a blueprint upgrade.
    from copier.errors import CopierError

    try:
        run_update(str(repo), data={SCALABLE[role]: count}, defaults=True, overwrite=True, quiet=True, unsafe=True,
                   vcs_ref=VcsRef.CURRENT)
    except (CopierError, ValueError, OSError) as err:  # whatever copier had written goes too
        restore_clean_git(repo)
        raise copier_failure(err) from None
    problems = check(repo) if check is not None else []
    if problems:  # the tree was clean before: put it back exactly
        restore_clean_git(repo)
        raise JourneyError("the scaled repo fails its own checks; nothing changed:\n"
                           + "\n".join(p.format() for p in problems))
    return plan
