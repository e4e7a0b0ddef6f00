"""Walk crossplane's parse of an nginx file: each directive with its enclosing blocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    line: int
    parents: tuple[Directive, ...]  # outermost first
    block: tuple[dict, ...] | None  # the raw children, when this directive has a block

    @property
    def context(self) -> str:
        """The innermost enclosing block's name ('main' at the top)."""
        return self.parents[-1].name if self.parents else "main"

    def children(self) -> Iterator[Directive]:
        for raw in self.block or ():
            yield _directive(raw, (*self.parents, self))

    def child(self, name: str) -> Directive | None:
        return next((c for c in self.children() if c.name == name), None)


def _directive(raw: dict, parents: tuple[Directive, ...]) -> Directive:
    block = raw.get("block")
    return Directive(raw["directive"], tuple(raw.get("args", ())), raw.get("line", 1), parents,
                     tuple(block) if block is not None else None)


def walk(payload: dict) -> Iterator[Directive]:
    """Every directive of the first config file in a crossplane payload, depth first."""
    if not payload.get("config"):
        return

    def visit(raws: list[dict], parents: tuple[Directive, ...]) -> Iterator[Directive]:
        for raw in raws:
            directive = _directive(raw, parents)
            yield directive
            if directive.block is not None:
                yield from visit(list(directive.block), (*parents, directive))

    yield from visit(payload["config"][0].get("parsed", []), ())


def find_all(payload: dict, name: str) -> list[Directive]:
    return [d for d in walk(payload) if d.name == name]
