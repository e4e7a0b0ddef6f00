"""Run the registered rules over a repo: suppressions, missing programs, ordering."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import rules as _rules  # noqa: F401 - registers every rule
from .config import LintConfig, inline_disabled
from .registry import RULES, Finding, Hit, Rule, Severity
from .repo import Repo

MISSING_PROGRAM = "HAL002"


@dataclass
class Report:
    root: Path
    findings: list[Finding]
    rules_run: list[str]
    suppressed: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def at_or_above(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity >= severity]

    def counts(self) -> dict[str, int]:
        return {s.label: sum(1 for f in self.findings if f.severity == s) for s in sorted(Severity, reverse=True)}


def lint(root: Path, config: LintConfig | None = None, tools: bool = True, select: set[str] | None = None) -> Report:
    """Lint the repo at root. ``tools`` False (or the config's tools: false) skips the real-program rules."""
    config = config or LintConfig()
    started = time.perf_counter()
    repo = Repo(root)
    findings: list[Finding] = []
    run: list[str] = []
    timings: dict[str, float] = {}
    for rule in RULES.values():
        if rule.id == MISSING_PROGRAM or (select is not None and rule.id not in select):
            continue
        if rule.family == "tools" and not (tools and config.tools):
            continue
        if rule.program and shutil.which(rule.program) is None and not _has_program(rule):
            findings.append(RULES[MISSING_PROGRAM].finding(
                Hit(".", 0, f"{rule.program} is not installed: {rule.id} ({rule.name}) was not run")))
            continue
        began = time.perf_counter()
        findings.extend(rule.finding(hit) for hit in _safe(rule, repo))
        timings[rule.id] = time.perf_counter() - began
        run.append(rule.id)
    kept = [f for f in findings if not (config.suppressed(f) or _inline(repo, f))]
    kept = sorted(set(kept), key=Finding.sort_key)
    return Report(root, kept, run, len(findings) - len(kept), time.perf_counter() - started, timings)


def _has_program(rule: Rule) -> bool:
    """postgres lives outside PATH on Debian (/usr/lib/postgresql/N/bin)."""
    return rule.program == "postgres" and any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


def _safe(rule: Rule, repo: Repo) -> list[Hit]:
    """A rule that crashes is a bug in halgen; say so as a finding instead of dying."""
    try:
        return list(rule.check(repo))
    except Exception as err:  # noqa: BLE001
        return [Hit(".", 0, f"internal error in {rule.id}, please report it: {type(err).__name__}: {err}")]


def _inline(repo: Repo, finding: Finding) -> bool:
    if finding.line < 1 or finding.file not in repo.files:
        return False
    return finding.rule in inline_disabled(repo.text(finding.file).splitlines(), finding.line)


def _register_missing_program_rule() -> None:
    from .registry import rule

    @rule(MISSING_PROGRAM, "program-missing", "info", "meta")
    def program_missing(repo: Repo) -> list[Hit]:
        """A real-program check could not run because its program is not installed.

        Reported once per program so a check is never skipped silently. Install
        the Debian package (`halgen lint --help` lists them) or pass --no-tools to
        run the file rules only; CI should always have them.
        """
        return []


_register_missing_program_rule()
