"""Small line-keeping parsers for the config formats of a generated repo.

Each returns what it understood plus (line, message) for what it did not, so a
parse rule can report the problem and the other rules can still look at the rest.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

ParseError = tuple[int, str]

# --- PostgreSQL: postgresql.conf -------------------------------------------------

_PG_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:=\s*|\s+)(.*)$")
_PG_VALUE = re.compile(r"""^(?:'((?:[^'\\]|''|\\.)*)'|([^\s'#]+))\s*(?:#.*)?$""")


_PG_INCLUDES = {"include", "include_if_exists", "include_dir"}


@dataclass(frozen=True)
class Setting:
    name: str
    value: str
    line: int


def pg_conf(text: str) -> tuple[dict[str, Setting], list[ParseError], list[Setting]]:
    """Settings by lower-case name (the last one wins, as in PostgreSQL), errors, and
    the settings that an earlier line of the same name is shadowed by."""
    settings: dict[str, Setting] = {}
    errors: list[ParseError] = []
    shadowing: list[Setting] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PG_LINE.match(line)
        value = _PG_VALUE.match(match.group(2)) if match else None
        if not match or not value:
            errors.append((number, f"cannot parse {line!r} (expected name = value)"))
            continue
        name = match.group(1).lower()
        text_value = value.group(1).replace("''", "'") if value.group(1) is not None else value.group(2)
        setting = Setting(name, text_value, number)
        if name in _PG_INCLUDES:
            continue  # directives, not settings: they may repeat
        if name in settings:
            shadowing.append(setting)
        settings[name] = setting
    return settings, errors, shadowing


_PG_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def pg_bytes(value: str, default_unit: str = "b", block: int = 1) -> int | None:
    """'1024MB' -> bytes; a bare number is in default_unit (x block for 8 kB settings)."""
    match = re.fullmatch(r"\s*(-?\d+)\s*([kKmMgGtT]?[bB])?\s*", value)
    if not match:
        return None
    number = int(match.group(1))
    unit = (match.group(2) or "").lower()
    return number * _PG_UNITS[unit] if unit else number * _PG_UNITS[default_unit] * block


# --- PostgreSQL: pg_hba.conf -----------------------------------------------------

HBA_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
HBA_METHODS = {"trust", "reject", "scram-sha-256", "md5", "password", "gss", "sspi", "ident", "peer", "ldap",
               "radius", "cert", "pam", "bsd"}


@dataclass(frozen=True)
class HbaEntry:
    line: int
    type: str
    database: str
    user: str
    address: str  # '' for local
    method: str


def pg_hba(text: str) -> tuple[list[HbaEntry], list[ParseError]]:
    entries: list[HbaEntry] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        kind = fields[0]
        if kind not in HBA_TYPES:
            errors.append((number, f"unknown connection type {kind!r}"))
            continue
        need = 4 if kind == "local" else 5
        if len(fields) < need:
            errors.append((number, f"{kind} line needs {need} fields, has {len(fields)}"))
            continue
        address = "" if kind == "local" else fields[3]
        method_at = 3 if kind == "local" else 4
        if kind != "local" and "/" not in address and method_at + 1 < len(fields) and "=" not in fields[4]:
            address = f"{address} {fields[4]}"  # address and netmask in two fields
            method_at += 1
        method = fields[method_at]
        if method not in HBA_METHODS:
            errors.append((number, f"unknown authentication method {method!r}"))
            continue
        entries.append(HbaEntry(number, kind, fields[1], fields[2], address, method))
    return entries, errors


# --- Redis and Sentinel: redis.conf ----------------------------------------------


@dataclass(frozen=True)
class Directive:
    name: str  # lower-case; 'sentinel monitor' style for Sentinel's two-word directives
    args: tuple[str, ...]
    line: int


def redis_conf(text: str) -> tuple[list[Directive], list[ParseError]]:
    directives: list[Directive] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=False, posix=True)
        except ValueError as err:
            errors.append((number, f"cannot split {line!r}: {err}"))
            continue
        name = words[0].lower()
        args = tuple(words[1:])
        if name == "sentinel" and args:
            name, args = f"sentinel {args[0].lower()}", args[1:]
        directives.append(Directive(name, args, number))
    return directives, errors


def first(directives: list[Directive], name: str) -> Directive | None:
    return next((d for d in directives if d.name == name), None)


# --- systemd units ---------------------------------------------------------------


@dataclass(frozen=True)
class UnitEntry:
    section: str
    key: str
    value: str
    line: int


def unit(text: str) -> tuple[list[UnitEntry], list[ParseError]]:
    entries: list[UnitEntry] = []
    errors: list[ParseError] = []
    section = ""
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        start = number
        line = raw.strip()
        while line.endswith("\\") and number < len(lines):  # continuation lines
            line = line[:-1] + " " + lines[number].strip()
            number += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                errors.append((start, f"unterminated section header {line!r}"))
            section = line.strip("[]")
            continue
        key, eq, value = line.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z0-9-]+", key.strip()):
            errors.append((start, f"expected Key=Value, got {line!r}"))
        elif not section:
            errors.append((start, f"{key.strip()}= outside any [Section]"))
        else:
            entries.append(UnitEntry(section, key.strip(), value.strip(), start))
    return entries, errors


# --- env files -------------------------------------------------------------------


def env_file(text: str) -> dict[str, Setting]:
    values: dict[str, Setting] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = Setting(key.strip(), value.strip(), number)
    return values


# --- ufw commands in the first-boot script ----------------------------------------


ALL_PORTS = tuple(range(1, 65536))


@dataclass(frozen=True)
class UfwRule:
    line: int
    source: str  # 'any' or a CIDR
    ports: tuple[int, ...]  # ALL_PORTS when the rule names none
    proto: str


def ufw_ports_of(text: str) -> tuple[int, ...]:
    """'22', '80,443', '6000:6010' (a range) -> the ports."""
    ports: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (high.isdigit() or not high):
            ports.extend(range(int(low), int(high or low) + 1))
    return tuple(ports)


def _ufw_allow(words: list[str]) -> tuple[str, tuple[int, ...], str] | None:
    """The words after 'ufw allow' (both syntaxes) -> (source, ports, proto)."""
    if len(words) == 1 and words[0] not in {"from", "proto"}:  # 'ufw allow 6379/tcp'
        port, _, proto = words[0].partition("/")
        return "any", ufw_ports_of(port), proto or "any"
    options = dict(zip(words[::2], words[1::2], strict=False))
    if "from" not in options and "port" not in options and "proto" not in options:
        return None
    ports = ufw_ports_of(options["port"]) if "port" in options else ALL_PORTS
    return options.get("from", "any"), ports, options.get("proto", "any")


def ufw_rules(script: str) -> tuple[list[UfwRule], dict[str, tuple[str, int]]]:
    """The 'ufw allow' rules and the default policies (direction -> (policy, line))."""
    rules: list[UfwRule] = []
    defaults: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.split("#", 1)[0].split(" comment ", 1)[0].strip()
        words = line.split()
        if words[:2] == ["ufw", "allow"] and (parsed := _ufw_allow(words[2:])):
            rules.append(UfwRule(number, parsed[0], parsed[1], parsed[2]))
        default = re.match(r"^ufw default (\w+) (incoming|outgoing)", line)
        if default:
            defaults[default.group(2)] = (default.group(1), number)
    return rules, defaults
