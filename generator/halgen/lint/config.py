"""Per-repo lint settings (.halgen-lint.yml) and per-line suppressions."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from halgen.compiler.loader import load as load_yaml
from halgen.errors import AnswersError, Problem, ProblemsError
from halgen.lint.registry import RULES, Finding, find

CONFIG_FILE = ".halgen-lint.yml"
FAIL_ON = ("error", "warning", "info", "never")
# '# halgen-lint: disable=HAL301,HAL305' on the line of a finding or the line above it.
_INLINE = re.compile(r"halgen-lint:\s*disable=([A-Za-z0-9_,\s-]+)")


@dataclass(frozen=True)
class LintConfig:
    disable: frozenset[str] = frozenset()
    ignore: tuple[tuple[str, frozenset[str]], ...] = ()  # (path glob, rule IDs)
    fail_on: str | None = None  # one of FAIL_ON; None: the command line decides
    tools: bool = True
    file: str = ""

    def suppressed(self, finding: Finding) -> bool:
        if finding.rule in self.disable:
            return True
        return any(finding.rule in ids and fnmatch.fnmatchcase(finding.file, glob) for glob, ids in self.ignore)


class ConfigError(ProblemsError):
    """A bad .halgen-lint.yml: a usage error (exit 2), reported as FILE:LINE: field: message."""


def _rule_ids(values: object, file: str, line: int,
              path: tuple[str | int, ...]) -> tuple[frozenset[str], list[Problem]]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return frozenset(), [Problem(file, line, "must be a list of rule IDs or names", path, values)]
    ids, problems = set(), []
    for value in values:
        try:
            ids.add(find(value).id)
        except KeyError:
            problems.append(Problem(file, line, "unknown rule (see 'halgen lint --list-rules')", path, value))
    return frozenset(ids), problems


def load(repo: Path, path: Path | None = None) -> LintConfig:
    path = path or repo / CONFIG_FILE
    if not path.is_file():
        return LintConfig()
    if not "".join(line for line in path.read_text(errors="replace").splitlines()
                   if not line.lstrip().startswith("#")).strip():
        return LintConfig(file=path.name)  # empty: the defaults
    try:
        loaded = load_yaml(path)
    except AnswersError as err:
        raise ConfigError(err.problems) from None
    data, file, problems = loaded.data, str(path), []
    line_of = loaded.line_of
    known = {"disable", "ignore", "fail_on", "tools"}
    for key in sorted(set(data) - known):
        problems.append(Problem(file, line_of((key,)), f"unknown setting; known: {', '.join(sorted(known))}", (key,)))
    disable, found = _rule_ids(data.get("disable", []), file, line_of(("disable",)), ("disable",))
    problems += found
    ignore = []
    globs = data.get("ignore", {})
    if not isinstance(globs, dict):
        problems.append(Problem(file, line_of(("ignore",)), "must map path globs to lists of rule IDs", ("ignore",)))
        globs = {}
    for glob, values in globs.items():
        ids, found = _rule_ids(values, file, line_of(("ignore", glob)), ("ignore", glob))
        problems += found
        ignore.append((str(glob), ids))
    fail_on = data.get("fail_on")
    if fail_on is not None and fail_on not in FAIL_ON:
        problems.append(Problem(file, line_of(("fail_on",)),
                                               f"must be one of {', '.join(FAIL_ON)}", ("fail_on",), fail_on))
    tools = data.get("tools", True)
    if not isinstance(tools, bool):
        problems.append(Problem(file, line_of(("tools",)), "must be true or false", ("tools",), tools))
    if problems:
        raise ConfigError(problems)
    return LintConfig(disable, tuple(ignore), fail_on, tools, path.name)


def inline_disabled(text_lines: list[str], line: int) -> set[str]:
    """Rule IDs disabled by a comment on ``line`` (1-based) or the line above it."""
    ids: set[str] = set()
    for number in (line, line - 1):
        if 1 <= number <= len(text_lines):
            match = _INLINE.search(text_lines[number - 1])
            if match:
                for word in re.split(r"[,\s]+", match.group(1).strip()):
                    if word:
                        try:
                            ids.add(find(word).id)
                        except KeyError:
                            ids.add(word.upper())
    return ids


__all__ = ["CONFIG_FILE", "ConfigError", "LintConfig", "RULES", "inline_disabled", "load"]
