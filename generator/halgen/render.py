"""Render the blueprint with copier into a staging directory, check it, move it into place.

Nothing is written at DEST until the whole tree rendered and passed its checks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import resources
from .checks import check_tree

ANSWERS_FILE = ".copier-answers.yml"
# Lines of the answers file that name where the blueprint was copied from; a
# plain render has no such place, and keeping a temp path would break determinism.
_SOURCE_KEYS = ("_src_path:", "_commit:")


class RenderError(Exception):
    """A problem with the destination or the rendered output; the CLI exits 2."""


def check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise RenderError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise RenderError(f"{dest}: directory is not empty; refusing to overwrite it (use --force to replace it)")


def render(answers: dict[str, Any], dest: Path, force: bool = False) -> Path:
    """Complete, valid answers -> a deployment repo at ``dest`` (replaced whole with ``force``)."""
    dest = dest.resolve()
    check_destination(dest, force)
    with _template_copy() as template, _staging(dest) as staging:
        _copier_copy(template, staging, answers)
        _drop_source_lines(staging / ANSWERS_FILE)
        _verify(staging)
        _move_into_place(staging, dest)
    return dest


def new(dest: Path, answers: dict[str, Any] | None, vcs_ref: str | None = None) -> Path:
    """Scaffold with copier from halgen's own blueprint (prompts unless answers are given)."""
    dest = dest.resolve()
    check_destination(dest, force=False)
    with _staging(dest) as staging:
        _copier_copy(resources.template_root(), staging, answers, vcs_ref=vcs_ref)
        _verify(staging)
        _move_into_place(staging, dest)
    return dest


def _copier_copy(template: Path, staging: Path, answers: dict[str, Any] | None, vcs_ref: str | None = None) -> None:
    from copier import run_copy
    from copier.errors import CopierError
    from jinja2 import TemplateError

    try:
        run_copy(
            str(template),
            str(staging),
            data=answers or {},
            defaults=answers is not None,
            overwrite=True,
            quiet=True,
            unsafe=True,  # the blueprint loads halgen's own Jinja extension
            vcs_ref=vcs_ref,
        )
    except CopierError as err:
        raise RenderError(f"copier: {err}") from None
    except TemplateError as err:
        where = f"{err.filename}:{err.lineno}: " if getattr(err, "filename", None) else ""
        raise RenderError(f"blueprint template error: {where}{err}") from None


def _verify(staging: Path) -> None:
    problems = check_tree(staging)
    if problems:
        raise RenderError("rendered output failed its checks:\n" + "\n".join(p.format() for p in problems))


@contextmanager
def _template_copy() -> Iterator[Path]:
    """A plain copy of the blueprint, so copier renders the working tree, not a git ref."""
    root = resources.template_root()
    with tempfile.TemporaryDirectory(prefix="halgen-blueprint-") as tmp:
        copy = Path(tmp)
        shutil.copy2(root / "copier.yml", copy / "copier.yml")
        shutil.copytree(root / "blueprints", copy / "blueprints")
        yield copy


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """A scratch directory beside ``dest`` (same file system, so the final rename is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.halgen-", dir=dest.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _drop_source_lines(answers_file: Path) -> None:
    lines = answers_file.read_text(encoding="utf-8").splitlines(keepends=True)
    answers_file.write_text("".join(ln for ln in lines if not ln.startswith(_SOURCE_KEYS)), encoding="utf-8")


def _move_into_place(staging: Path, dest: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it 0700
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        staging.rename(dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.halgen-old-", dir=dest.parent))
    old.rmdir()
    dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
