"""Median failover times of the generated data tier on real servers (loopback).

usage: python bench/failover_bench.py [--runs N]
Runs the real-server tests that time a Redis Sentinel failover (SIGKILL of the
master until a replica accepts writes) and the PostgreSQL manual failover, N
times each, and prints the medians. Needs root, PostgreSQL and Redis (make system-deps).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBES = {
    "redis failover (s)": ("tests/test_redis.py::test_sentinel_fails_over_within_10_seconds",
                           r"redis failover: ([0-9.]+) s"),
    "postgresql manual failover (s)": ("tests/test_postgres.py::test_replicas_stream_and_failover_keeps_the_dsn[async]",
                                       r"manual failover took ([0-9.]+) s"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for label, (test, pattern) in PROBES.items():
        values = []
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", test], cwd=REPO,
                                 capture_output=True, text=True)
            match = re.search(pattern, out.stdout)
            if out.returncode != 0 or not match:
                print(f"{label}: run failed\n{out.stdout[-2000:]}", file=sys.stderr)
                return 1
            values.append(float(match.group(1)))
        print(f"{label}: median {statistics.median(values):.2f} over {args.runs} runs "
              f"(min {min(values):.2f}, max {max(values):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
