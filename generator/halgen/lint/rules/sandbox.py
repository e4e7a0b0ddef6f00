"""The stack's daemons run in systemd's sandbox, measured by systemd itself.

A tools rule: it runs when `systemd-analyze` is installed (HAL002 reports it
missing otherwise)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from halgen.errors import Problem
from halgen.lint.registry import rule
from halgen.lint.repo import Repo

MAX_EXPOSURE = 3.0
# The network-facing daemons halgen generates units for, by the program they run.
# start_server: Starlet. Debian ships the other exporters' units; this one is halgen's (one per DB node).
DAEMONS = frozenset({"redis-server", "redis-sentinel", "starman", "start_server", "prometheus-postgres-exporter"})
_SHOWN = 4  # the largest exposures named in a finding
# What a network daemon on the host's root keeps open by design: not worth naming.
_INHERENT = frozenset({"PrivateNetwork=", "RootDirectory=/RootImage=", "RestrictAddressFamilies=~AF_(INET|INET6)",
                       "RestrictAddressFamilies=~AF_UNIX"})
_UNIT_DIR = "/etc/systemd/system/"


@dataclass(frozen=True)
class Exposure:
    """systemd-analyze security's verdict on one unit: its overall score (0 safest,
    10 unprotected) and each setting it counts against the unit, largest first."""

    score: float
    gaps: list[tuple[str, float]]


@rule("HAL507", "systemd-exposure", "error", "tools", programs=("systemd-analyze",))
def systemd_exposure(repo: Repo) -> Iterator[Problem]:
    """`systemd-analyze security` scores each Redis, Sentinel, app server and PostgreSQL exporter unit 3.0 or less.

    These daemons face the network: a bug in one should not give its attacker
    the node. systemd's own score sums what the unit leaves open (system calls,
    capabilities, writable paths, kernel interfaces, address families); halgen's
    units score about 1. Each unit is scored as its node would load it, drop-ins
    (`<unit>.service.d/*.conf` in the repo) included and the machine's own units
    left out. To fix, restore the sandbox settings the finding names (or
    regenerate the unit); a daemon that truly needs more should say why in a
    drop-in and the rule be disabled for that file.
    """
    for rel in repo.units():
        if _program(repo, rel) not in DAEMONS:
            continue
        node_root, _, name = rel.rpartition(_UNIT_DIR)
        exposure = analyze(str(repo.root / node_root), name)
        line = repo.line_of(rel, r"^\[Service\]", default=0)
        if isinstance(exposure, str):
            yield Problem(rel, line, f"systemd-analyze security gave no score: {exposure}")
        elif exposure.score > MAX_EXPOSURE:
            gaps = [(setting, value) for setting, value in exposure.gaps if setting not in _INHERENT]
            largest = ", ".join(f"{setting} ({value})" for setting, value in gaps[:_SHOWN])
            yield Problem(rel, line, f"systemd-analyze security scores the unit {exposure.score} (at most "
                                     f"{MAX_EXPOSURE} allowed); the largest exposures: {largest}")


def _program(repo: Repo, rel: str) -> str:
    """The basename of the program the unit's ExecStart runs ("" when there is none)."""
    entries, _ = repo.unit(rel)
    starts = [e.value for e in entries if e.section == "Service" and e.key == "ExecStart"]
    words = starts[-1].lstrip("@-:+!").split() if starts else []
    return words[0].rsplit("/", 1)[-1] if words else ""


def analyze(root: str, unit: str) -> Exposure | str:
    """Score `unit` as found under `root` (a node's tree: etc/systemd/system/...), or
    say why systemd-analyze gave no score."""
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", unit],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LC_ALL": "C", "SYSTEMD_COLORS": "0"})
    overall = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out.stdout)
    if overall is None:
        return (out.stderr.strip() or out.stdout.strip() or f"exit status {out.returncode}").splitlines()[-1]
    # In the C locale a failed check is "- Name=  description  exposure"; a passed one has no number.
    gaps = [(m.group(1), float(m.group(2)))
            for m in re.finditer(r"^- (\S+)\s{2,}.*?\s(\d+\.\d+)\s*$", out.stdout, flags=re.M)]
    return Exposure(float(overall.group(1)), sorted(gaps, key=lambda gap: -gap[1]))
