"""Where the blueprint, the schema and the package data live.

In a source checkout they sit at the repo root (copier reads the blueprint
there); an installed wheel carries a copy under ``halgen/_bundled``.
"""

from __future__ import annotations

import json
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

_COMPILER_DIR = Path(__file__).resolve().parent
_PACKAGE_DIR = _COMPILER_DIR.parent  # halgen/
DATA_DIR = _COMPILER_DIR / "data"


@cache
def _source_root() -> Path:
    for candidate in (_PACKAGE_DIR.parent.parent, _PACKAGE_DIR / "_bundled"):
        if (candidate / "copier.yml").is_file() and (candidate / "blueprints").is_dir():
            return candidate
    raise FileNotFoundError("halgen's blueprint (copier.yml + blueprints/) is missing from this installation")


def template_root() -> Path:
    """The directory holding copier.yml (and blueprints/ below it): what copier copies from."""
    return _source_root()


@cache
def blueprint_version(template_root: Path) -> str:
    """The halgen release a blueprint belongs to: the version in the pyproject.toml beside
    its copier.yml (a checkout, or a release copier checked out to update a stack), else
    this halgen's own (a wheel's bundled copy is this release). Generated files name it,
    so a stack updated by a newer halgen still matches the release it was made from."""
    pyproject = template_root / "pyproject.toml"
    if pyproject.is_file():
        version = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("version")
        if isinstance(version, str):
            return version
    from halgen import __version__

    return __version__


def schema_path() -> Path:
    return _source_root() / "schema" / "answers.schema.json"


@cache
def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def price_catalogue() -> dict[str, Any]:
    catalogue: dict[str, Any] = load_json(DATA_DIR / "linode_prices.json")
    return catalogue
