"""postgresql.conf: settings with their lines, and PostgreSQL's memory units."""

from __future__ import annotations

import re

from halgen.formats.base import ParseError, Setting

_PG_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:=\s*|\s+)(.*)$")
_PG_VALUE = re.compile(r"""^(?:'((?:[^'\\]|''|\\.)*)'|([^\s'#]+))\s*(?:#.*)?$""")


INCLUDES = {"include", "include_if_exists", "include_dir"}


def entries(text: str) -> tuple[list[Setting], list[ParseError]]:
    """Every line in order, include directives too (lower-case names), and the errors."""
    found: list[Setting] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PG_LINE.match(line)
        value = _PG_VALUE.match(match.group(2)) if match else None
        if not match or not value:
            errors.append((number, f"cannot parse {line!r} (expected name = value)"))
            continue
        text_value = value.group(1).replace("''", "'") if value.group(1) is not None else value.group(2)
        found.append(Setting(match.group(1).lower(), text_value, number))
    return found, errors


def parse(text: str) -> tuple[dict[str, Setting], list[ParseError], list[Setting]]:
    """Settings by lower-case name (the last one wins, as in PostgreSQL), errors, and
    the settings that an earlier line of the same name is shadowed by."""
    settings: dict[str, Setting] = {}
    shadowing: list[Setting] = []
    found, errors = entries(text)
    for setting in found:
        if setting.name in INCLUDES:
            continue  # directives, not settings: they may repeat
        if setting.name in settings:
            shadowing.append(setting)
        settings[setting.name] = setting
    return settings, errors, shadowing


_PG_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def pg_bytes(value: str, default_unit: str = "b", block: int = 1) -> int | None:
    """'1024MB' -> bytes; a bare number is in default_unit (x block for 8 kB settings)."""
    match = re.fullmatch(r"\s*(-?\d+)\s*([kKmMgGtT]?[bB])?\s*", value)
    if not match:
        return None
    number = int(match.group(1))
    unit = (match.group(2) or "").lower()
    return number * _PG_UNITS[unit] if unit else number * _PG_UNITS[default_unit] * block
