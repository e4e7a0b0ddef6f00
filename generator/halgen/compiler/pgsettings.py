"""pg_settings answers checked the way PostgreSQL will read them: the name exists in the
chosen major version, the value has the setting's type, unit and range, and no memory
setting asks for more than the database plan's RAM. The catalogue
(data/pg_settings.json) is what the servers describe; tools/pg_settings_catalogue.py
makes it."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from halgen.compiler import resources

UNKNOWN_UNIT = "?"  # the catalogue's mark for a numeric setting whose unit is not known
_MEMORY = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_TIME = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NUMBER = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*")
# Settings that take memory (a disk size such as max_wal_size is no RAM).
RAM_SETTINGS = frozenset({"shared_buffers", "work_mem", "maintenance_work_mem", "autovacuum_work_mem",
                          "effective_cache_size", "temp_buffers", "wal_buffers", "logical_decoding_work_mem",
                          "huge_page_size", "min_dynamic_shared_memory"})
_BOOLEAN = {"on", "off", "true", "false", "yes", "no", "1", "0", "t", "f", "y", "n", "tr", "tru", "fa", "fal",
            "fals", "ye"}


@dataclass(frozen=True)
class Setting:
    name: str
    vartype: str  # bool, integer, real, string, enum
    unit: str  # '', 'B', 'kB', '8kB', 'MB', 'ms', 's', 'min'
    low: float | None
    high: float | None
    choices: tuple[str, ...]
    context: str  # 'internal': read-only, PostgreSQL refuses it in a config file

    @property
    def is_memory(self) -> bool:
        return self.unit.lower().lstrip("0123456789") in _MEMORY

    def base_bytes(self) -> int:
        digits = "".join(c for c in self.unit if c.isdigit())
        return int(digits or 1) * _MEMORY[self.unit.lower().lstrip("0123456789")]


@cache
def catalogue(version: int) -> dict[str, Setting]:
    data = resources.load_json(resources.DATA_DIR / "pg_settings.json")
    return {name: Setting(name, spec[0], spec[1], _float(spec[2]), _float(spec[3]),
                          tuple(spec[4].split(",")) if spec[4] else (), spec[5])
            for name, spec in data["versions"][str(version)].items()}


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def problems(name: str, value: Any, version: int, ram_mb: int) -> list[str]:
    """What is wrong with ``name = value`` for PostgreSQL ``version`` on a node with ``ram_mb``."""
    known = catalogue(version)
    setting = known.get(name.lower())
    if setting is None:
        close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return [f"is not a PostgreSQL {version} setting{hint}"]
    if setting.context == "internal":
        return ["is read-only: PostgreSQL reports it and refuses to start when a config file sets it"]
    text = str(value).strip()
    if setting.vartype == "bool":
        return [] if text.lower() in _BOOLEAN else ["must be on or off"]
    if setting.vartype == "enum":
        if setting.choices and text.lower() not in {c.lower() for c in setting.choices}:
            return [f"must be one of: {', '.join(setting.choices)}"]
        return []
    if setting.vartype in {"integer", "real"}:
        return _number_problems(setting, text, ram_mb)
    return []


def _number_problems(setting: Setting, text: str, ram_mb: int) -> list[str]:
    match = _NUMBER.fullmatch(text)
    if not match or (setting.vartype == "integer" and not match[2] and not re.fullmatch(r"\s*[-+]?\d+\s*", text)):
        return [f"must be a {'whole number' if setting.vartype == 'integer' else 'number'}"
                + (f" with an optional unit ({_units(setting)})" if setting.unit else "")]
    number, unit = float(match[1]), match[2]
    if setting.unit == UNKNOWN_UNIT:  # no server here told its unit: only the number's form is checked
        return []
    if unit and not setting.unit:
        return [f"takes no unit (got {unit!r})"]
    base = _in_base_unit(setting, number, unit)
    if base is None:
        return [f"unit {unit!r} is not one of {_units(setting)}"]
    if setting.low is not None and base < setting.low or setting.high is not None and base > setting.high:
        shown = f" {setting.unit}" if setting.unit else ""
        return [f"is out of range: {setting.low:g} to {setting.high:g}{shown}"]
    if setting.name in RAM_SETTINGS and base * setting.base_bytes() > ram_mb * 1024**2:
        return [f"asks for more memory than the database plan has ({ram_mb} MB)"]
    return []


def _units(setting: Setting) -> str:
    return ", ".join(["B", "kB", "MB", "GB", "TB"] if setting.is_memory else ["us", "ms", "s", "min", "h", "d"])


def _in_base_unit(setting: Setting, number: float, unit: str) -> float | None:
    """The value in the setting's own unit (8kB blocks, kB, ms, ...)."""
    if not unit:
        return number
    if setting.is_memory:
        if unit not in {"B", "kB", "MB", "GB", "TB"}:  # PostgreSQL's spelling, case and all
            return None
        return number * _MEMORY[unit.lower()] / setting.base_bytes()
    factor = _TIME.get(unit)
    if factor is None or setting.unit not in _TIME:
        return None
    return number * factor / _TIME[setting.unit]
