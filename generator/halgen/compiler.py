"""load -> validate -> derive: the front half of the compiler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import answers, rules, schema
from .answers import LoadedAnswers
from .model import Stack, derive
from .problems import AnswersError


def complete_answers(loaded: LoadedAnswers) -> dict[str, Any]:
    """Validate fully (schema, then cross-field rules); return answers with defaults filled in."""
    problems = schema.validate(loaded)
    if problems:
        raise AnswersError(problems)
    complete = schema.with_defaults(loaded.data)
    problems = rules.check(loaded, complete)
    if problems:
        raise AnswersError(problems)
    return complete


def load_answers(path: Path | None) -> dict[str, Any]:
    """An answer file (or the built-in defaults) -> complete, valid answers."""
    if path is None:
        return schema.defaults()
    return complete_answers(answers.load(path))


def stack_from(data: dict[str, Any], file: str = "<answers>") -> Stack:
    return derive(complete_answers(answers.from_mapping(data, file)))
