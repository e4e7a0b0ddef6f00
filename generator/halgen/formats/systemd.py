"""systemd unit files: Key=Value entries by section, continuation lines joined."""

from __future__ import annotations

import re
from dataclasses import dataclass

from halgen.formats.base import ParseError


@dataclass(frozen=True)
class UnitEntry:
    section: str
    key: str
    value: str
    line: int


def parse(text: str) -> tuple[list[UnitEntry], list[ParseError]]:
    entries: list[UnitEntry] = []
    errors: list[ParseError] = []
    section = ""
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        start = number
        line = raw.strip()
        while line.endswith("\\") and number < len(lines):  # continuation lines
            line = line[:-1] + " " + lines[number].strip()
            number += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                errors.append((start, f"unterminated section header {line!r}"))
            section = line.strip("[]")
            continue
        key, eq, value = line.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z0-9-]+", key.strip()):
            errors.append((start, f"expected Key=Value, got {line!r}"))
        elif not section:
            errors.append((start, f"{key.strip()}= outside any [Section]"))
        else:
            entries.append(UnitEntry(section, key.strip(), value.strip(), start))
    return entries, errors
