"""nginx configuration: crossplane's strict parse (with Debian 12's directives) and a walk
over it that gives each directive with its enclosing blocks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# Blocks whose body is a table of values, not directives (crossplane 0.5.8 checks them as
# directives, so "default" in a map would be an "unknown directive").
VALUE_BLOCKS = frozenset({"map", "geo", "split_clients", "types", "charset_map"})


def parse(path: Path, included: bool = False) -> dict[str, Any]:
    """crossplane's parse of one nginx file (includes are not followed), strict: every
    directive outside a value table must be one nginx knows. An included file is read
    without the context check: its context is where it is included."""
    payload: dict[str, Any] = crossplane.parse(str(path), single=True, strict=False, check_ctx=not included,
                                               check_args=True, comments=False)
    for config in payload["config"]:
        for line, name in _unknown_directives(config.get("parsed", [])):
            error = f'unknown directive "{name}" in {config["file"]}:{line}'
            config["errors"].append({"error": error, "line": line})
            payload["errors"].append({"file": config["file"], "error": error, "line": line})
            config["status"] = payload["status"] = "failed"
    return payload


def _unknown_directives(raws: list[dict[str, Any]]) -> Iterator[tuple[int, str]]:
    for raw in raws:
        if raw["directive"] not in DIRECTIVES:
            yield raw.get("line", 1), raw["directive"]
        if raw.get("block") is not None and raw["directive"] not in VALUE_BLOCKS:
            yield from _unknown_directives(raw["block"])


# An include directive -> (repo file, parsed directives) of each file it names.
Includer = Callable[["Directive"], list[tuple[str, list[dict[str, Any]]]]]


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    line: int
    parents: tuple[Directive, ...]  # outermost first
    block: tuple[dict[str, Any], ...] | None  # the raw children, when this directive has a block
    file: str = ""  # the repo file it is in, when includes are followed
    includer: Includer | None = field(default=None, compare=False, repr=False)
    chain: tuple[str, ...] = field(default=(), compare=False, repr=False)  # the files including this one

    @property
    def context(self) -> str:
        """The innermost enclosing block's name ('main' at the top)."""
        return self.parents[-1].name if self.parents else "main"

    def children(self) -> Iterator[Directive]:
        """The directives of this block, those of files it includes in their place."""
        yield from _visit(self.block or (), (*self.parents, self), self.file, self.includer, self.chain, deep=False)

    def child(self, name: str) -> Directive | None:
        return next((c for c in self.children() if c.name == name), None)


def _visit(raws: Iterable[dict[str, Any]], parents: tuple[Directive, ...], file: str, includer: Includer | None,
           chain: tuple[str, ...], deep: bool) -> Iterator[Directive]:
    for raw in raws:
        block = raw.get("block")
        directive = Directive(raw["directive"], tuple(raw.get("args", ())), raw.get("line", 1), parents,
                              tuple(block) if block is not None else None, file, includer, chain)
        yield directive
        if directive.name == "include" and includer is not None:
            for included_file, parsed in includer(directive):
                if included_file not in (*chain, file):  # a file including itself, directly or not
                    yield from _visit(parsed, parents, included_file, includer, (*chain, file), deep)
        if deep and block is not None:
            yield from _visit(block, (*parents, directive), file, includer, chain, deep)


def walk(payload: dict[str, Any], file: str = "", includer: Includer | None = None) -> Iterator[Directive]:
    """Every directive of the first config file in a crossplane payload, depth first;
    with an includer, those of the files its includes name in their place."""
    if not payload.get("config"):
        return
    yield from _visit(payload["config"][0].get("parsed", []), (), file, includer, (), deep=True)


def find_all(payload: dict[str, Any], name: str) -> list[Directive]:
    return [d for d in walk(payload) if d.name == name]
