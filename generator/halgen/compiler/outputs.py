"""Checks on rendered output that run during every compile (a failure aborts it)."""

from __future__ import annotations

from pathlib import Path

from halgen.errors import Problem
from halgen.formats import nginx


def check_nginx(root: Path) -> list[Problem]:
    """crossplane's strict parse of every load balancer's nginx files."""
    problems = []
    for conf in sorted(root.glob("nodes/*/etc/nginx/**/*.conf")):
        for config in nginx.parse(conf)["config"]:
            for err in config["errors"]:
                rel = Path(config["file"]).resolve().relative_to(root.resolve())
                problems.append(Problem(str(rel), err.get("line") or 1, f"nginx: {err['error']}"))
    return problems


def check_tree(root: Path) -> list[Problem]:
    return check_nginx(root)
