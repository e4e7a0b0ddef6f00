"""What every format parser returns besides what it understood."""

from __future__ import annotations

from dataclasses import dataclass

ParseError = tuple[int, str]  # (1-based line, message): a line the parser did not understand


@dataclass(frozen=True)
class Setting:
    """A name = value line (postgresql.conf, env files)."""

    name: str
    value: str
    line: int
    file: str = ""  # the repo file it was read from, when a reader followed includes
