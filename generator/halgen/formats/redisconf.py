"""redis.conf and sentinel.conf: directives with their lines."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from halgen.formats.base import ParseError


@dataclass(frozen=True)
class Directive:
    name: str  # lower-case; 'sentinel monitor' style for Sentinel's two-word directives
    args: tuple[str, ...]
    line: int
    file: str = ""  # the repo file it was read from, when a reader followed includes


def parse(text: str) -> tuple[list[Directive], list[ParseError]]:
    directives: list[Directive] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=False, posix=True)
        except ValueError as err:
            errors.append((number, f"cannot split {line!r}: {err}"))
            continue
        name = words[0].lower()
        args = tuple(words[1:])
        if name == "sentinel" and args:
            name, args = f"sentinel {args[0].lower()}", args[1:]
        directives.append(Directive(name, args, number))
    return directives, errors


def first(directives: list[Directive], name: str) -> Directive | None:
    return next((d for d in directives if d.name == name), None)


def last(directives: list[Directive], name: str) -> Directive | None:
    """The one that takes effect: Redis applies every line in order, so the last wins."""
    return next((d for d in reversed(directives) if d.name == name), None)
