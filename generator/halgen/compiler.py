"""load -> validate -> derive: the front half of the compiler."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import answers, rules, schema
from .answers import LoadedAnswers
from .model import LINODE, Stack, Target, derive
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


def load_repo_answers(repo: Path) -> dict[str, Any]:
    """The answers a generated repo was made from (its .copier-answers.yml)."""
    loaded = answers.load(repo / ".copier-answers.yml")
    own = {k: v for k, v in loaded.data.items() if not k.startswith("_")}
    return complete_answers(dataclasses.replace(loaded, data=own))


def rehearsal_target(prefix: Path, loopback_subnet: str) -> Target:
    """A one-machine target; raises ValueError with a message for bad input."""
    import ipaddress
    import re

    if not prefix.is_absolute() or not re.fullmatch(r"[A-Za-z0-9._/-]+", str(prefix)) or ".." in prefix.parts:
        raise ValueError("rehearsal prefix must be an absolute path of letters, digits, '.', '_', '-' and '/'"
                         f" (got {prefix})")
    try:
        net = ipaddress.IPv4Network(loopback_subnet)
    except ValueError as err:
        raise ValueError(f"loopback subnet: {err}") from None
    if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) or not 16 <= net.prefixlen <= 24:
        raise ValueError(f"loopback subnet must be a /16 to /24 inside 127.0.0.0/8 (got {loopback_subnet})")
    if ipaddress.IPv4Address("127.0.0.1") in net:
        raise ValueError("loopback subnet must not contain 127.0.0.1 (other programs use it)")
    return Target(loopback_subnet=str(net), prefix=str(prefix))


def stack_from(data: dict[str, Any], file: str = "<answers>", target: Target = LINODE) -> Stack:
    return derive(complete_answers(answers.from_mapping(data, file)), target)
