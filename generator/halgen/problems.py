"""The one error format for bad answers: ``FILE:LINE: field.path: message (got VALUE)``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# A field path: keys and list indexes from the document root.
FieldPath = tuple[str | int, ...]

_NO_VALUE = object()
_MAX_SHOWN = 60


def dotted(path: FieldPath) -> str:
    """``("admins", 0, "name")`` -> ``admins[0].name``; the root is ``(document)``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def show_value(value: Any) -> str:
    """A short, single-line rendering of a value (newlines and control chars escaped)."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except (TypeError, ValueError):  # pragma: no cover - defensive
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: FieldPath
    message: str
    value: Any = _NO_VALUE

    def format(self) -> str:
        got = "" if self.value is _NO_VALUE else f" (got {show_value(self.value)})"
        return f"{self.file}:{self.line}: {dotted(self.path)}: {self.message}{got}"


def problem(file: str, line: int, path: FieldPath, message: str, *value: Any) -> Problem:
    """Build a Problem; pass the offending value as an optional last argument."""
    return Problem(file, line, path, message, value[0] if value else _NO_VALUE)


class AnswersError(Exception):
    """Raised with every problem found at once; the CLI prints them and exits 2."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, dotted(p.path), p.message))
        super().__init__("\n".join(p.format() for p in self.problems))


class RenderError(Exception):
    """A problem with the destination or the rendered output; the CLI exits 2."""
