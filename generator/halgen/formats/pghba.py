"""pg_hba.conf: one entry per line, with its connection type, address and method."""

from __future__ import annotations

from dataclasses import dataclass

from halgen.formats.base import ParseError

HBA_TYPES = {"local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
INCLUDES = {"include", "include_if_exists", "include_dir"}  # PostgreSQL 16+
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
    file: str = ""  # the repo file it was read from, when a reader followed includes


def parse(text: str) -> tuple[list[HbaEntry], list[ParseError]]:
    entries: list[HbaEntry] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        kind = fields[0]
        if kind in INCLUDES and len(fields) == 2:
            continue  # includes() gives them
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


def includes(text: str) -> list[tuple[int, str, str]]:
    """(line, directive, file) of each include line, in order."""
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if len(fields) == 2 and fields[0] in INCLUDES:
            found.append((number, fields[0], fields[1].strip("\"'")))
    return found
