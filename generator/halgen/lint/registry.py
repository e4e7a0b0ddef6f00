"""The rule registry: every lint rule has a stable ID, a severity, a family, a
one-line summary and a doc (why it matters, how to fix it)."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from halgen.errors import Problem

if TYPE_CHECKING:
    from halgen.lint.repo import Repo


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


FAMILIES = {
    "meta": "the repo itself: answers, lint set-up",
    "parse": "each file parses as its program will read it",
    "consistency": "files agree with each other and with the answers",
    "security": "nothing is open, weak or leaked",
    "operations": "the stack keeps running: sizing, limits, backups, leftovers",
    "tools": "the real programs accept the files (run when installed)",
}


@dataclass(frozen=True)
class Finding:
    """A rule's Problem (file relative to the repo root, '/'-separated; line 0 for a whole
    file) with the rule's ID and severity."""

    rule: str
    severity: Severity
    problem: Problem

    @property
    def file(self) -> str:
        return self.problem.file

    @property
    def line(self) -> int:
        return self.problem.line

    @property
    def message(self) -> str:
        return self.problem.message

    def sort_key(self) -> tuple[str, int, str, str]:
        return (self.file, self.line, self.rule, self.message)


Check = Callable[["Repo"], Iterable[Problem]]


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    severity: Severity
    family: str
    summary: str
    doc: str
    check: Check = field(repr=False, compare=False)
    programs: tuple[str, ...] = ()  # the real programs a tools rule runs

    @property
    def program(self) -> str | None:
        return self.programs[0] if self.programs else None

    def finding(self, problem: Problem) -> Finding:
        return Finding(self.id, self.severity, problem)


RULES: dict[str, Rule] = {}


def rule(rule_id: str, name: str, severity: str, family: str,
         programs: tuple[str, ...] = ()) -> Callable[[Check], Check]:
    """Register a check. Its docstring is the rule's doc: the first paragraph is the
    one-line summary, the rest says why it matters and how to fix it."""
    if family not in FAMILIES:
        raise ValueError(f"{rule_id}: unknown family {family}")

    def register(check: Check) -> Check:
        if rule_id in RULES:
            raise ValueError(f"duplicate rule ID {rule_id}")
        doc = inspect.cleandoc(check.__doc__ or "")
        summary, _, rest = doc.partition("\n\n")
        RULES[rule_id] = Rule(rule_id, name, Severity.parse(severity), family, " ".join(summary.split()), rest.strip(),
                              check, programs)
        return check

    return register


def find(key: str) -> Rule:
    """A rule by ID (any case) or name."""
    key_upper = key.upper()
    for r in RULES.values():
        if r.id == key_upper or r.name == key.lower():
            return r
    raise KeyError(key)
