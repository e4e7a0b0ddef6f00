"""Medians of the automatic PostgreSQL failover drills (Patroni) on loopback.

usage: python bench/patroni_bench.py [--runs N] [--answers FILE] [--set KEY=VALUE ...]
Renders the answers (default: the built-in ones), runs `halgen rehearse --drill
<each Patroni drill> --json` N times, and prints each timed figure's median with its
minimum and maximum, and how many runs met each drill's target. Root, with
make system-deps. Each run starts a fresh stack; a run takes about two minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DRILLS = ("etcd-member-loss", "dcs-loss", "pg-switchover", "pg-primary-kill", "pg-rejoin", "pg-primary-hang")
TIMED = {
    "pg-primary-kill": ("seconds until writes resume", "rows lost"),
    "pg-switchover": ("writes unavailable s", "script s", "rows lost"),
    "pg-rejoin": ("seconds until streaming",),
    "pg-primary-hang": ("elected after s", "writes it acknowledged after the new primary's first"),
    "etcd-member-loss": ("failed writes",),
    "dcs-loss": ("failed writes",),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--answers", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an answer to change, as YAML (e.g. pg_replication=sync)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="halgen-patroni-bench-") as tmp:
        answers = Path(tmp) / "answers.yml"
        base = args.answers.read_text() if args.answers else ""
        text = base + "".join(f"\n{k}: {v}" for k, v in (s.split("=", 1) for s in args.set))
        answers.write_text(text + "\n" if text.strip() else "{}\n")
        repo = Path(tmp) / "repo"
        subprocess.run([sys.executable, "-m", "halgen.cli", "render", str(answers), "--out", str(repo)], check=True,
                       cwd=REPO)
        figures: dict[tuple[str, str], list[float]] = {}
        passed: dict[str, int] = {}
        for run in range(args.runs):
            drills = [arg for name in DRILLS for arg in ("--drill", name)]
            out = subprocess.run([sys.executable, "-m", "halgen.cli", "rehearse", str(repo), *drills, "--json"],
                                 capture_output=True, text=True, cwd=REPO)
            try:
                report = json.loads(out.stdout)
            except json.JSONDecodeError:
                print(f"run {run + 1}: no report\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            if report.get("failure"):
                print(f"run {run + 1}: {report['failure']}", file=sys.stderr)
                return 1
            for drill in report["drills"]:
                passed[drill["name"]] = passed.get(drill["name"], 0) + bool(drill["passed"])
                if not drill["passed"]:
                    print(f"run {run + 1}: {drill['name']} missed: {drill['figures']} {drill['note']}",
                          file=sys.stderr)
                for key in TIMED.get(drill["name"], ()):
                    value = drill["figures"].get(key)
                    if isinstance(value, int | float):
                        figures.setdefault((drill["name"], key), []).append(float(value))
    for name in DRILLS:
        print(f"{name}: target met in {passed.get(name, 0)} of {args.runs} runs")
        for key in TIMED[name]:
            values = figures.get((name, key), [])
            if values:
                print(f"  {key}: median {statistics.median(values):g} (min {min(values):g}, max {max(values):g}, "
                      f"{len(values)} runs)")
    return 0 if all(passed.get(name, 0) == args.runs for name in DRILLS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
