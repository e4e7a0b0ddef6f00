"""Regenerate generator/halgen/compiler/data/pg_settings.json: every PostgreSQL setting by
major version, with its type, unit, bounds and allowed values, as the servers themselves
describe them.

usage (as root; PostgreSQL refuses to run as root, so it runs as the postgres user):
  python tools/pg_settings_catalogue.py 15=/usr/lib/postgresql/15/bin 16=/path/bin \\
      17=describe:/path/to/describe-config-17.tsv 14=like:15+stats_temp_directory

VERSION=BINDIR      initdb a scratch cluster and read pg_settings (names, units, enum values)
VERSION=describe:F  a saved 'postgres --describe-config' (no units or enum values; the hidden
                    settings of the previous version are carried over)
VERSION=like:V+A,B  version V's catalogue plus settings A, B (for a version with no runnable binary)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "generator/halgen/compiler/data/pg_settings.json"
QUERY = ("COPY (SELECT name, vartype, coalesce(unit,''), coalesce(min_val,''), coalesce(max_val,''), "
         "coalesce(array_to_string(enumvals, ','),''), context FROM pg_settings ORDER BY name) TO STDOUT;")
UNKNOWN_UNIT = "?"  # a numeric setting whose unit no server here could tell: units and range go unchecked


def from_server(bindir: Path) -> dict[str, list[str]]:
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch).chmod(0o777)
        data = Path(scratch) / "data"
        subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-U", "postgres"],
                       check=True, capture_output=True)
        out = subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "postgres"), "--single", "-D", str(data),
                              "postgres"], input=QUERY, check=True, capture_output=True, text=True).stdout
    # The single-user backend prefixes its prompt ("backend> ") to the first row.
    rows = [line.rsplit("backend> ", 1)[-1].split("\t") for line in out.splitlines() if line.count("\t") == 6]
    return {r[0].lower(): [r[1], r[2], r[3], r[4], r[5], r[6]] for r in rows}


def from_describe(path: Path, previous: dict[str, list[str]]) -> dict[str, list[str]]:
    found = {}
    for line in path.read_text().splitlines():
        name, context, _group, vartype, _default, low, high = line.split("\t")[:7]
        kind = {"BOOLEAN": "bool"}.get(vartype, vartype.lower())  # pg_settings' word for it
        old = previous.get(name.lower())
        if old is not None and old[0] == kind:
            unit, choices = old[1], old[4]
        else:
            unit, choices = (UNKNOWN_UNIT if kind in {"integer", "real"} else ""), ""
        found[name.lower()] = [kind, unit, low, high, choices, context]
    described = {line.split("\t")[0].lower() for line in path.read_text().splitlines()}
    hidden = {name: spec for name, spec in previous.items() if name not in described}
    return {**hidden, **found}


def main(argv: list[str]) -> int:
    catalogue: dict[str, dict[str, list[str]]] = {}
    sources: dict[str, str] = {}
    for arg in argv:
        version, _, how = arg.partition("=")
        if how.startswith("describe:"):
            catalogue[version] = from_describe(Path(how.removeprefix("describe:")), catalogue[str(int(version) - 1)])
            sources[version] = "postgres --describe-config (units and enum values from the previous version)"
        elif how.startswith("like:"):
            base, _, extra = how.removeprefix("like:").partition("+")
            catalogue[version] = {**catalogue[base],
                                  **{n: ["string", "", "", "", "", "sighup"] for n in extra.split(",") if n}}
            sources[version] = (f"PostgreSQL {base}'s catalogue plus {extra or 'nothing'} "
                                f"(no {version} binary was at hand)")
        else:
            catalogue[version] = from_server(Path(how))
            sources[version] = "pg_settings of a scratch server"
    doc = {"columns": ["vartype", "unit", "min", "max", "enumvals", "context"], "sources": sources,
           "versions": {v: dict(sorted(catalogue[v].items())) for v in sorted(catalogue)}}
    OUT.write_text(json.dumps(doc, indent=None, separators=(",", ":"), sort_keys=False) + "\n")
    print(f"{OUT}: " + ", ".join(f"{v}: {len(s)} settings" for v, s in sorted(catalogue.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
