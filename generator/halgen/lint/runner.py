"""Run the registered rules over a repo: suppressions, missing programs, ordering."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from halgen.errors import Problem
from halgen.host.localpg import installed_pg_version
from halgen.lint import rules as _rules  # noqa: F401 - registers every rule
from halgen.lint.config import LintConfig, inline_disabled
from halgen.lint.registry import RULES, Finding, Rule, Severity, rule
from halgen.lint.repo import Repo

MISSING_PROGRAM = "HAL002"
RULE_CRASHED = "HAL003"


@dataclass
class Report:
    root: Path
    findings: list[Finding]
    rules_run: list[str]
    suppressed: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """False when a rule crashed (a halgen bug): its part of the check did not happen."""
        return not any(f.rule == RULE_CRASHED for f in self.findings)

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
    reported_missing: set[str] = set()
    for r in RULES.values():
        if r.family == "meta" and r.id != "HAL001" or (select is not None and r.id not in select):
            continue
        if r.family == "tools" and not (tools and config.tools):
            continue
        missing = [p for p in r.programs if not installed(p)]
        if missing:
            for program in sorted(set(missing) - reported_missing):
                findings.append(RULES[MISSING_PROGRAM].finding(
                    Problem(".", 0, f"{program} is not installed: {r.id} ({r.name}) was not run")))
            reported_missing.update(missing)
            continue
        began = time.perf_counter()
        findings.extend(_run_rule(r, repo))
        timings[r.id] = time.perf_counter() - began
        run.append(r.id)
    unique = set(findings)
    kept = sorted((f for f in unique if not (config.suppressed(f) or _inline(repo, f))), key=Finding.sort_key)
    return Report(root, kept, run, len(unique) - len(kept), time.perf_counter() - started, timings)


def installed(program: str) -> bool:
    """On PATH - or, for postgres, in Debian's /usr/lib/postgresql/N/bin."""
    if shutil.which(program):
        return True
    return program == "postgres" and installed_pg_version() is not None


def _run_rule(r: Rule, repo: Repo) -> list[Finding]:
    """A rule that crashes is a bug in halgen: say so as an error finding instead of dying."""
    try:
        return [r.finding(hit) for hit in r.check(repo)]
    except Exception as err:  # noqa: BLE001
        return [RULES[RULE_CRASHED].finding(
            Problem(".", 0, f"{r.id} ({r.name}) failed and did not check the repo: {type(err).__name__}: {err}"))]


def _inline(repo: Repo, finding: Finding) -> bool:
    if finding.line < 1 or finding.file not in repo.files:
        return False
    return finding.rule in inline_disabled(repo.text(finding.file).splitlines(), finding.line)


@rule(MISSING_PROGRAM, "program-missing", "info", "meta")
def program_missing(repo: Repo) -> list[Problem]:
    """A real-program check could not run because its program is not installed.

    Reported once per program so a check is never skipped silently. Install
    the Debian packages (`halgen lint --help` lists them) or pass --no-tools to
    run the file rules only; CI should always have them.
    """
    return []


@rule(RULE_CRASHED, "rule-crashed", "error", "meta")
def rule_crashed(repo: Repo) -> list[Problem]:
    """A rule failed with an unexpected error, so part of the repo was not checked.

    This is a bug in halgen (or a program it runs timed out): please report it
    with the message. The run counts as failed, and SARIF output marks the
    execution as unsuccessful.
    """
    return []
