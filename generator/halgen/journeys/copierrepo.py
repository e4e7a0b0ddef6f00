"""A repo that copier manages: its recorded answers, and the clean git tree copier update needs.

Only copier's public interface is used (``run_copy``, ``run_update``, ``VcsRef``,
``copier.errors`` and the ``copier check-update`` command)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from halgen.compiler import loader
from halgen.errors import HalgenError

ANSWERS_FILE = ".copier-answers.yml"


class JourneyError(HalgenError):
    """A repo that cannot take the step (not copier-made, dirty, ...)."""


def recorded(repo: Path) -> dict[str, Any]:
    """Everything .copier-answers.yml records, copier's own ``_`` keys included."""
    path = repo / ANSWERS_FILE
    if not path.is_file():
        raise JourneyError(f"{repo}: no {ANSWERS_FILE}; was it made by 'halgen new' or 'copier copy'?")
    return loader.load(path).data


def own_answers(data: dict[str, Any]) -> dict[str, Any]:
    """The stack's answers without copier's bookkeeping (``_src_path``, ``_commit``)."""
    return {k: v for k, v in data.items() if not k.startswith("_")}


def require_clean_git(repo: Path) -> None:
    result = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise JourneyError(f"{repo}: not a git repository (copier update needs one): git init && git add -A && commit")
    if result.stdout.strip():
        raise JourneyError(f"{repo}: has uncommitted changes; commit or stash them first (copier update needs it)")


def restore_clean_git(repo: Path) -> None:
    """Undo everything since the clean state require_clean_git saw (ignored files such as
    secrets/ and build/ are left alone)."""
    for argv in (["git", "reset", "--hard", "-q"], ["git", "clean", "-fdq"]):
        subprocess.run(argv, cwd=repo, check=True, capture_output=True)


def copier_failure(err: Exception) -> JourneyError:
    """copier's own errors (a bad recorded ref, a missing source, refused answers) as one
    line for the user; the first line of copier's message says what went wrong."""
    text = str(err).strip() or type(err).__name__
    return JourneyError(f"copier: {text}")
