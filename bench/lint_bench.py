"""Median wall time of `halgen lint` on the default stack (a fresh process each run).

usage: python bench/lint_bench.py [--runs N] [--tools-runs N] [--json] [--strict]
Target (issue 7): the file rules alone (--no-tools) take <= 0.5 s. With the real
programs (nginx -t, systemd-analyze, cloud-init schema, shellcheck, a throwaway
postgres and redis-server) the time is reported, with the slowest rules.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_STATIC_S = 0.5


def _time(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=False, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--tools-runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the static target is missed")
    args = parser.parse_args()
    from halgen.lint import lint

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "stack"
        subprocess.run([sys.executable, "-m", "halgen.cli", "render", "--out", str(repo)], check=True,
                       capture_output=True)
        cli = [sys.executable, "-m", "halgen.cli", "lint", str(repo)]
        static = _time([*cli, "--no-tools"], args.runs)
        in_process = statistics.median(lint(repo, tools=False).seconds for _ in range(args.runs))
        tools = _time(cli, args.tools_runs) if args.tools_runs else 0.0
        slowest = sorted(lint(repo).timings.items(), key=lambda kv: -kv[1])[:6] if args.tools_runs else []
    result = {"static_cli_s": round(static, 3), "static_rules_s": round(in_process, 3),
              "with_programs_cli_s": round(tools, 2), "slowest_rules_s": {k: round(v, 2) for k, v in slowest}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"halgen lint --no-tools (whole command, median of {args.runs}): {static:.3f} s "
              f"(target <= {TARGET_STATIC_S} s); the rules alone: {in_process:.3f} s")
        if args.tools_runs:
            print(f"halgen lint with real programs (median of {args.tools_runs}): {tools:.2f} s; slowest rules: "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in slowest))
    return 1 if args.strict and static > TARGET_STATIC_S else 0


if __name__ == "__main__":
    sys.exit(main())
