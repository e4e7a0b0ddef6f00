"""load -> validate -> derive: the front half of the compiler."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from halgen.compiler import crossfield, loader, schema
from halgen.compiler.answers import Answers
from halgen.compiler.loader import LoadedAnswers
from halgen.compiler.model import LINODE, Stack, Target, derive
from halgen.errors import AnswersError, HalgenError


def complete_answers(loaded: LoadedAnswers) -> Answers:
    """Validate fully (schema, then cross-field rules); return answers with defaults filled in."""
    problems = schema.validate(loaded)
    if problems:
        raise AnswersError(problems)
    complete = Answers.from_dict(schema.with_defaults(loaded.data))
    problems = crossfield.check(loaded, complete)
    if problems:
        raise AnswersError(problems)
    return complete


def default_answers() -> Answers:
    """The built-in defaults (valid: a test renders them)."""
    return Answers.from_dict(schema.defaults())


def load_answers(path: Path | None) -> Answers:
    """An answer file (or the built-in defaults) -> complete, valid answers."""
    if path is None:
        return default_answers()
    return complete_answers(loader.load(path))


def load_repo_answers(repo: Path) -> Answers:
    """The answers a generated repo was made from (its .copier-answers.yml)."""
    loaded = loader.load(repo / ".copier-answers.yml")
    own = {k: v for k, v in loaded.data.items() if not k.startswith("_")}
    return complete_answers(dataclasses.replace(loaded, data=own))


def rehearsal_target(prefix: Path, loopback_subnet: str) -> Target:
    """A one-machine target; bad input is a HalgenError."""
    import ipaddress
    import re

    if not prefix.is_absolute() or not re.fullmatch(r"[A-Za-z0-9._/-]+", str(prefix)) or ".." in prefix.parts:
        raise HalgenError("rehearsal prefix must be an absolute path of letters, digits, '.', '_', '-' and '/'"
                         f" (got {prefix})")
    try:
        net = ipaddress.IPv4Network(loopback_subnet)
    except ValueError as err:
        raise HalgenError(f"loopback subnet: {err}") from None
    if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) or not 16 <= net.prefixlen <= 24:
        raise HalgenError(f"loopback subnet must be a /16 to /24 inside 127.0.0.0/8 (got {loopback_subnet})")
    if ipaddress.IPv4Address("127.0.0.1") in net:
        raise HalgenError("loopback subnet must not contain 127.0.0.1 (other programs use it)")
    return Target(loopback_subnet=str(net), prefix=str(prefix))


def stack_from(data: dict[str, Any], file: str = "<answers>", target: Target = LINODE,
               version: str | None = None) -> Stack:
    return derive(complete_answers(loader.from_mapping(data, file)), target, version)
