"""Requests per second and p50/p99 latency through the generated load balancer (nginx + HAProxy) and through
the seed document's config verbatim: same Starman instances, same wrk, alternating.

usage: python bench/rehearse_bench.py [--rounds N] [--duration S] [--connections C] [--answers FILE] [--quick]
Renders the answers (default: the built-in defaults) into a temporary repo and runs
'halgen rehearse REPO --bench': one row per load (1x, 2x and 4x the stack's app server
workers as wrk connections, or --connections only). Prints its table; exits 1 when any
row misses the target (>= 2.5x the seed's requests per second, p99 no worse, no errors).
Needs the rehearsal's programs and wrk ('halgen rehearse --check' names what is missing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per config and round")
    parser.add_argument("--connections", type=int,
                        help="one load of this many wrk connections (default: 1x, 2x, 4x the Starman workers)")
    parser.add_argument("--answers", type=Path, help="answer file (default: the built-in defaults)")
    parser.add_argument("--quick", action="store_true",
                        help="one round of 2 s per load: a smoke run, not a measurement")
    args = parser.parse_args()
    rounds, duration = (1, 2.0) if args.quick else (args.rounds, args.duration)
    halgen = [sys.executable, "-m", "halgen.cli"]
    with tempfile.TemporaryDirectory(prefix="halgen-bench-") as scratch:
        repo = Path(scratch) / "repo"
        render = subprocess.run([*halgen, "render", *([str(args.answers)] if args.answers else []), "--out", str(repo)],
                                capture_output=True, text=True)
        if render.returncode != 0:
            print(render.stderr, file=sys.stderr, end="")
            return 2
        command = [*halgen, "rehearse", str(repo), "--bench", "--bench-rounds", str(rounds),
                   "--bench-duration", str(duration)]
        if args.connections:
            command += ["--bench-connections", str(args.connections)]
        return subprocess.run(command).returncode


if __name__ == "__main__":
    raise SystemExit(main())
