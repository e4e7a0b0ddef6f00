"""``halgen new``: scaffold a stack repo with copier from halgen's own blueprint, so that
``copier update`` can carry blueprint fixes into it later."""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateError

from halgen.compiler import pipeline, secrets
from halgen.compiler.answers import Answers
from halgen.compiler.write import (
    TreeCheck,
    check_destination,
    move_into_place,
    staging_dir,
    template_location,
    verify,
)
from halgen.errors import RenderError
from halgen.journeys.source import blueprint_source


def new(dest: Path, answers: Answers | None, vcs_ref: str | None = None, check: TreeCheck | None = None) -> Path:
    """Scaffold at ``dest`` (prompts unless answers are given); nothing is written there
    until the whole tree rendered and passed its checks."""
    dest = dest.resolve()
    check_destination(dest, force=False, way_out="choose a new directory, or update a stack made before with "
                      "'copier update' inside it")
    with staging_dir(dest) as staging:
        source, own_ref = blueprint_source()
        _copier_copy(source, staging, answers, vcs_ref=vcs_ref or own_ref)
        # Prompted answers: as copier wrote them.
        verify(staging, answers or pipeline.load_repo_answers(staging), check=check)
        secrets.ensure(staging)
        move_into_place(staging, dest)
    return dest


def _copier_copy(template: str, staging: Path, answers: Answers | None, vcs_ref: str | None = None) -> None:
    from copier import run_copy
    from copier.errors import CopierError

    try:
        run_copy(
            template,
            str(staging),
            data=answers.to_dict() if answers else {},
            defaults=answers is not None,
            overwrite=True,
            quiet=True,
            unsafe=True,  # the blueprint loads halgen's own Jinja extension
            vcs_ref=vcs_ref,
        )
    except CopierError as err:
        raise RenderError(f"copier: {err}") from None
    except ValueError as err:  # copier's word for a git ref the blueprint does not have
        if vcs_ref is not None and "revision" in str(err).lower():
            raise RenderError(f"--vcs-ref {vcs_ref}: the blueprint has no such tag, branch or commit") from None
        raise
    except TemplateError as err:
        raise RenderError(f"blueprint template error: {template_location(err)}{err}") from None
