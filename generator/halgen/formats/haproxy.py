"""haproxy.cfg: sections (global, defaults, frontend NAME, backend NAME, listen NAME)
with their keyword lines, each with its line number. Words split as HAProxy does for
the plain configs halgen writes: on blanks, '#' starting a comment, quotes grouping."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from halgen.formats.base import ParseError

SECTIONS = frozenset({"global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist",
                      "program", "http-errors", "ring", "mailers", "cache"})


@dataclass(frozen=True)
class Line:
    keyword: str
    args: tuple[str, ...]
    line: int


@dataclass
class Section:
    kind: str  # global, defaults, frontend, backend, listen, ...
    name: str  # '' for global and an unnamed defaults
    line: int
    lines: list[Line] = field(default_factory=list)

    def all(self, keyword: str) -> list[Line]:
        return [entry for entry in self.lines if entry.keyword == keyword]

    def last(self, keyword: str) -> Line | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def option(self, *words: str) -> Line | None:
        """The last line whose keyword and first arguments are these words (e.g. 'timeout', 'server')."""
        found = [e for e in self.lines if e.keyword == words[0] and e.args[:len(words) - 1] == words[1:]]
        return found[-1] if found else None


def parse(text: str) -> tuple[list[Section], list[ParseError]]:
    sections: list[Section] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            words = shlex.split(stripped, comments=True, posix=True)
        except ValueError as err:
            errors.append((number, f"cannot split {stripped!r}: {err}"))
            continue
        if not words:
            continue
        if words[0] in SECTIONS:
            sections.append(Section(words[0], words[1] if len(words) > 1 else "", number))
        elif not sections:
            errors.append((number, f"'{words[0]}' outside any section"))
        else:
            sections[-1].lines.append(Line(words[0], tuple(words[1:]), number))
    return sections, errors


def of_kind(sections: list[Section], *kinds: str) -> list[Section]:
    return [s for s in sections if s.kind in kinds]


def seconds(value: str) -> float | None:
    """An HAProxy time ('4s', '500ms', '2m', '10' = milliseconds) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1e-3}
    number = value.rstrip("usmhd")
    unit = value[len(number):]
    if not number.isdigit() or unit not in units:
        return None
    return int(number) * units[unit]


def unprivileged(text: str) -> str:
    """The config without what only root with a haproxy user can do (its chroot, user
    and group lines), each left as a comment so that line numbers stay the same."""
    return re.sub(r"^([ \t]*)(chroot|user|group)([ \t].*)?$", r"\1# \2 (left out: needs root)", text, flags=re.M)


def with_stats_socket(text: str, path: str) -> str:
    """The config with its stats socket at ``path``."""
    return re.sub(r"^([ \t]*stats socket )\S+", lambda m: f"{m[1]}{path}", text, flags=re.M)
