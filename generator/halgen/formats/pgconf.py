"""postgresql.conf: settings with their lines, and PostgreSQL's memory units."""

from __future__ import annotations

import re

from halgen.formats.base import ParseError, Setting

_PG_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:=\s*|\s+)(.*)$")
_PG_VALUE = re.compile(r"""^(?:'((?:[^'\\]|''|\\.)*)'|([^\s'#]+))\s*(?:#.*)?$""")


_PG_INCLUDES = {"include", "include_if_exists", "include_dir"}


def parse(text: str) -> tuple[dict[str, Setting], list[ParseError], list[Setting]]:
    """Settings by lower-case name (the last one wins, as in PostgreSQL), errors, and
    the settings that an earlier line of the same name is shadowed by."""
    settings: dict[str, Setting] = {}
    errors: list[ParseError] = []
    shadowing: list[Setting] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PG_LINE.match(line)
        value = _PG_VALUE.match(match.group(2)) if match else None
        if not match or not value:
            errors.append((number, f"cannot parse {line!r} (expected name = value)"))
            continue
        name = match.group(1).lower()
        text_value = value.group(1).replace("''", "'") if value.group(1) is not None else value.group(2)
        setting = Setting(name, text_value, number)
        if name in _PG_INCLUDES:
            continue  # directives, not settings: they may repeat
        if name in settings:
            shadowing.append(setting)
        settings[name] = setting
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
