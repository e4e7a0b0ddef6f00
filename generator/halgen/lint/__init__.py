"""halgen lint: catch broken, inconsistent or unsafe stacks before they reach a server."""

from .config import ConfigError, LintConfig
from .registry import RULES, Finding, Rule, Severity
from .runner import Report, lint

__all__ = ["RULES", "ConfigError", "Finding", "LintConfig", "Report", "Rule", "Severity", "lint"]
