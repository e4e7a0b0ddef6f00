"""KEY=value environment files as systemd's EnvironmentFile= reads them (no quoting)."""

from __future__ import annotations

from halgen.formats.base import ParseError, Setting


def parse(text: str) -> tuple[dict[str, Setting], list[ParseError]]:
    """Settings by name (a later line wins) and the lines that are neither blank,
    a ``#`` comment nor ``KEY=value``."""
    values: dict[str, Setting] = {}
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            errors.append((number, "expected NAME=value"))
            continue
        values[key.strip()] = Setting(key.strip(), value.strip(), number)
    return values, errors
