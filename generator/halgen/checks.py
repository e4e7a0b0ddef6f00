"""Checks on rendered output that run during every compile (a failure aborts it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import crossplane
from crossplane.analyzer import (
    DIRECTIVES,
    NGX_CONF_1MORE,
    NGX_CONF_FLAG,
    NGX_CONF_TAKE1,
    NGX_HTTP_MAIN_CONF,
    NGX_HTTP_SRV_CONF,
    NGX_HTTP_UPS_CONF,
)


@dataclass(frozen=True)
class OutputProblem:
    file: str
    line: int
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


# Directives that Debian 12's nginx (1.22) knows but crossplane 0.5.8's table
# lacks. Extending the table keeps strict mode on, so typos still fail.
_EXTRA_DIRECTIVES = {
    "keepalive_time": [NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_TAKE1, NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1],
    "ssl_reject_handshake": [NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_FLAG],
    "proxy_ssl_conf_command": [NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_1MORE],
}


def _extend_directive_table() -> None:
    for name, masks in _EXTRA_DIRECTIVES.items():
        known = DIRECTIVES.setdefault(name, [])
        known.extend(m for m in masks if m not in known)


_extend_directive_table()


def parse_nginx(path: Path) -> dict:
    """crossplane's strict parse of one nginx file (includes are not followed)."""
    return crossplane.parse(str(path), single=True, strict=True, check_ctx=True, check_args=True, comments=False)


def check_nginx(root: Path) -> list[OutputProblem]:
    problems = []
    for conf in sorted(root.glob("nodes/*/etc/nginx/**/*.conf")):
        payload = parse_nginx(conf)
        for config in payload["config"]:
            for err in config["errors"]:
                rel = Path(config["file"]).resolve().relative_to(root.resolve())
                problems.append(OutputProblem(str(rel), err.get("line") or 1, f"nginx: {err['error']}"))
    return problems


def check_tree(root: Path) -> list[OutputProblem]:
    return check_nginx(root)
