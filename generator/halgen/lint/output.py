"""Report formats: text for people, JSON for scripts, SARIF 2.1.0 for code-scanning UIs."""

from __future__ import annotations

import json
from urllib.parse import quote

from halgen import __version__
from halgen.lint.registry import RULES, Finding, Severity
from halgen.lint.runner import Report

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def text(report: Report) -> str:
    lines = [f"{f.file}:{f.line}: {f.rule} {f.severity.label} {f.message}" for f in report.findings]
    counts = report.counts()
    summary = ", ".join(f"{n} {label}{'s' if n != 1 else ''}" for label, n in counts.items())
    lines.append(f"halgen lint: {summary} ({len(report.rules_run)} rules, {report.seconds:.2f} s"
                 + (f", {report.suppressed} suppressed" if report.suppressed else "") + ")")
    return "\n".join(lines) + "\n"


def as_json(report: Report) -> str:
    doc = {
        "version": __version__,
        "root": str(report.root),
        "findings": [{"rule": f.rule, "name": RULES[f.rule].name, "severity": f.severity.label, "file": f.file,
                      "line": f.line, "message": f.message} for f in report.findings],
        "summary": {**report.counts(), "suppressed": report.suppressed, "rules_run": len(report.rules_run),
                    "seconds": round(report.seconds, 3)},
    }
    return json.dumps(doc, indent=2) + "\n"


def _location(f: Finding) -> dict:
    location: dict = {"artifactLocation": {"uri": quote(f.file), "uriBaseId": "SRCROOT"}}
    if f.line >= 1:
        location["region"] = {"startLine": f.line}
    return {"physicalLocation": location}


def sarif(report: Report) -> str:
    rule_ids = sorted(RULES)
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    driver = {
        "name": "halgen lint",
        "version": __version__,
        "informationUri": "https://github.com/halgen/halgen/tree/main/docs/rules",
        "rules": [{
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.doc or r.summary},
            "helpUri": f"https://github.com/halgen/halgen/blob/main/docs/rules/{r.id}.md",
            "help": {"text": r.doc or r.summary},
            "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity]},
            "properties": {"family": r.family},
        } for r in (RULES[i] for i in rule_ids)],
    }
    results = [{
        "ruleId": f.rule,
        "ruleIndex": index[f.rule],
        "level": _SARIF_LEVEL[f.severity],
        "message": {"text": f.message},
        "locations": [_location(f)],
    } for f in report.findings]
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": driver},
            "originalUriBaseIds": {"SRCROOT": {"uri": report.root.resolve().as_uri() + "/"}},
            "results": results,
            "invocations": [{"executionSuccessful": report.complete}],
        }],
    }
    return json.dumps(doc, indent=2) + "\n"


FORMATS = {"text": text, "json": as_json, "sarif": sarif}
