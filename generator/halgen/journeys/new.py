"""``halgen new``: scaffold a stack repo with copier from halgen's own blueprint, so that
``copier update`` can carry blueprint fixes into it later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

# copier data that makes halgen's blueprint ask every question, not only the basic ones.
ADVANCED = "_halgen_advanced"


def new(dest: Path, answers: Answers | None, vcs_ref: str | None = None, check: TreeCheck | None = None,
        advanced: bool = False) -> Path:
    """Scaffold at ``dest`` (prompts unless answers are given: the basic questions, all of
    them with ``advanced``); nothing is written there until the whole tree rendered and
    passed its checks. Answers refused at the end are kept for '--answers'."""
    dest = dest.resolve()
    check_destination(dest, force=False, way_out="choose a new directory, or update a stack made before with "
                      "'copier update' inside it")
    with staging_dir(dest) as staging:
        source, own_ref = blueprint_source()
        data = answers.to_dict() if answers else {ADVANCED: advanced}
        _copier_copy(source, staging, data, answers is not None, vcs_ref or own_ref, dest)
        # Prompted answers: as copier wrote them.
        verify(staging, answers or pipeline.load_repo_answers(staging), check=check)
        secrets.ensure(staging)
        move_into_place(staging, dest)
    return dest


def _copier_copy(template: str, staging: Path, data: dict[str, Any], defaults: bool, vcs_ref: str | None,
                 dest: Path) -> None:
    from copier import run_copy
    from copier.errors import CopierError

    try:
        run_copy(
            template,
            str(staging),
            data=data,
            defaults=defaults,
            overwrite=True,
            quiet=True,
            unsafe=True,  # the blueprint loads halgen's own Jinja extension
            vcs_ref=vcs_ref,
        )
    except CopierError as err:
        refused = getattr(err, "answers", None)
        if isinstance(refused, dict):
            kept = _keep(refused, dest)
            raise RenderError(f"{err}\nYour answers are kept in {kept}: fix the fields named above, then run "
                              f"'halgen new {dest} --answers {kept}'") from None
        raise RenderError(f"copier: {err}") from None
    except ValueError as err:  # copier's word for a git ref it lacks, or for data a question refuses
        if vcs_ref is not None and "revision" in str(err).lower():
            raise RenderError(f"--vcs-ref {vcs_ref}: the blueprint has no such tag, branch or commit") from None
        if str(err).startswith("Validation error for question"):
            raise RenderError(str(err)) from None
        raise
    except TemplateError as err:
        raise RenderError(f"blueprint template error: {template_location(err)}{err}") from None


def _keep(answers: dict[str, Any], dest: Path) -> Path:
    """Write refused answers beside ``dest`` under a name no file has yet."""
    import json

    for n in range(1, 1000):
        path = dest.parent / (f"{dest.name}.answers.yml" if n == 1 else f"{dest.name}.answers-{n}.yml")
        try:
            with path.open("x", encoding="utf-8") as handle:  # never overwrites
                handle.write("# Answers 'halgen new' refused; fix them and pass this file with --answers.\n")
                handle.writelines(f"{json.dumps(k)}: {json.dumps(v)}\n" for k, v in answers.items())
            return path
        except FileExistsError:
            continue
    raise RenderError(f"{dest.parent}: no free name to keep the answers in")
