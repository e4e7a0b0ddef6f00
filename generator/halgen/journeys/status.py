"""Where a generated repo stands against its blueprint: the version in use, whether a
newer one exists (``copier check-update``), and its local edits against a fresh render."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from halgen.journeys.copierrepo import ANSWERS_FILE, JourneyError, copier_failure, own_answers, recorded
from halgen.journeys.source import refresh_source

UNTRACKED = ("secrets", "build", ".git")


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
    refresh_source(data)
    update_available, latest = check_update(repo)
    from copier import run_copy
    from copier.errors import CopierError

    with tempfile.TemporaryDirectory(prefix="halgen-status-") as tmp:
        fresh = Path(tmp) / "fresh"
        try:
            run_copy(str(source), str(fresh), data=own_answers(data), defaults=True, quiet=True, unsafe=True,
                     vcs_ref=str(version))
        except (CopierError, ValueError, OSError) as err:
            raise copier_failure(err) from None
        theirs, ours = _files(fresh), _files(repo)
    report = Status(version=str(version), source=str(source), latest=latest, update_available=update_available)
    shared = (ours.keys() & theirs.keys()) - {ANSWERS_FILE}
    report.edited = sorted(p for p in shared if ours[p] != theirs[p])
    report.added = sorted(ours.keys() - theirs.keys())
    report.missing = sorted(theirs.keys() - ours.keys())
    return report


def check_update(repo: Path) -> tuple[bool | None, str | None]:
    """(newer release available?, latest version) from ``copier check-update``; (None, why)
    when copier cannot tell (no tags, unreachable source): said, never fatal."""
    result = subprocess.run([sys.executable, "-m", "copier", "check-update", "--output-format", "json", str(repo)],
                            capture_output=True, text=True)
    try:
        answer = json.loads(result.stdout)
        return bool(answer["update_available"]), str(answer["latest_version"])
    except (ValueError, KeyError, TypeError):
        lines = (result.stderr or result.stdout).strip().splitlines()
        return None, f"unknown ({lines[-1] if lines else 'copier check-update exited ' + str(result.returncode)})"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in UNTRACKED}
