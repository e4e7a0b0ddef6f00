"""One error model for all of halgen.

``Problem`` is the one located-problem type: bad answers, cross-field rules, rendered
output that fails its checks, lint findings and lint settings all name a file and a
line. ``HalgenError`` is the one exception base: a click exception carrying its exit
code (2: the user's input or environment is wrong), so the CLI needs no per-command
error handling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import click

# A field path: keys and list indexes from the document root.
FieldPath = tuple[str | int, ...]

NO_VALUE: Any = object()  # a Problem that shows no offending value
_MAX_SHOWN = 60


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Anything that could move the cursor, ring, recolour or forge a line on a terminal.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def dotted(path: FieldPath) -> str:
    """``("admins", 0, "name")`` -> ``admins[0].name``; the root is ``(document)``. A key that
    is not plain letters, digits, '_' and '-' is shown quoted and escaped: ``["a\\nb"]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            text += f"[{json.dumps(part, ensure_ascii=True)}]"
        else:
            text += f".{part}" if text else part
    return text or "(document)"


def printable(text: str) -> str:
    """``text`` with every control or line-reordering character escaped (``\\n``, ``\\x1b``)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def show_value(value: Any) -> str:
    """A short, single-line rendering of a value (newlines and control chars escaped)."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """``FILE:LINE: [field: ]message[ (got VALUE)]``. ``line`` is 1-based, 0 for a whole file;
    ``field`` is set for problems in an answer or settings file, None for other files."""

    file: str
    line: int
    message: str
    field: FieldPath | None = None
    value: Any = NO_VALUE

    def format(self) -> str:
        where = "" if self.field is None else f"{dotted(self.field)}: "
        got = "" if self.value is NO_VALUE else f" (got {show_value(self.value)})"
        return printable(f"{self.file}:{self.line}: {where}{self.message}{got}")

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line, "" if self.field is None else dotted(self.field), self.message)


class HalgenError(click.ClickException):
    """Any failure halgen reports to the user: one message, exit code 2, no traceback.

    The CLI sets ``command`` (e.g. ``halgen render``) so the message says where it came from."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.command: str | None = None

    def show(self, file: IO[Any] | None = None) -> None:
        # It may quote a path or value the user gave; its own line breaks stay line breaks.
        message = "\n".join(printable(line) for line in self.format_message().split("\n"))
        click.echo(message if self.command is None else f"{self.command}: {message}", err=True)


class ProblemsError(HalgenError):
    """Every problem found at once, one ``FILE:LINE: ...`` line each (they carry their place,
    so no command prefix is added), then an optional summary line that says what to do."""

    def __init__(self, problems: Iterable[Problem], summary: str | None = None):
        self.problems = sorted(problems, key=Problem.sort_key)
        self.summary = summary
        super().__init__("\n".join(p.format() for p in self.problems))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.format_message(), err=True)  # each line is printable already
        if self.summary:
            click.echo(self.summary if self.command is None else f"{self.command}: {self.summary}", err=True)


class AnswersError(ProblemsError):
    """Answers that fail the schema or a cross-field rule."""


class RenderError(HalgenError):
    """A problem with the destination or the rendered output."""
