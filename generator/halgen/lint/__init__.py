"""halgen lint: catch broken, inconsistent or unsafe stacks before they reach a server."""

from halgen.lint.config import ConfigError, LintConfig
from halgen.lint.registry import RULES, Finding, Rule, Severity
from halgen.lint.runner import Report, lint

__all__ = ["RULES", "ConfigError", "Finding", "LintConfig", "Report", "Rule", "Severity", "lint"]
