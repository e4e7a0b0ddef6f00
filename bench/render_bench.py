"""Median wall time of `halgen render` (a fresh process each run, as users run it).

usage: python bench/render_bench.py [--runs N] [--dir DIR] [--json]
Targets (issue 2): default answers <= 1 s on a 2-core machine; 200 app servers <= 2x the default.

Output goes under --dir (default: bench/.work in this checkout). Writing 400+
files is dominated by the file system: on the reference machine /tmp (ext4
mounted with discard) creates files ~25x slower than the work volume, so pick
the disk your repos live on.
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

CASES: dict[str, str] = {
    "default": "",
    "2 app servers": "app_servers: 2\n",
    "10 app servers": "app_servers: 10\n",
    "50 app servers": "app_servers: 50\npg_max_connections: 400\n",
    "200 app servers": "app_servers: 200\npg_max_connections: 1100\n",
}


def time_render(answers: str, runs: int, where: Path) -> tuple[float, int, int]:
    times = []
    files = largest = 0
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        answers_file = Path(tmp) / "answers.yml"
        answers_file.write_text(answers or "{}\n")
        for run in range(runs):
            out = Path(tmp) / f"out{run}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "halgen.cli", "render", str(answers_file), "--out", str(out)],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        sizes = [p.stat().st_size for p in out.rglob("*") if p.is_file()]
        files, largest = len(sizes), max(sizes)
    return statistics.median(times), files, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / ".work")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, answers in CASES.items():
        median, files, largest = time_render(answers, args.runs, args.dir)
        results[name] = {"median_s": round(median, 3), "files": files, "largest_file_bytes": largest}
    base = results["default"]["median_s"]
    ratio = results["200 app servers"]["median_s"] / base
    if args.json:
        print(json.dumps({"results": results, "ratio_200_to_default": round(ratio, 2)}, indent=2))
    else:
        for name, r in results.items():
            print(f"{name:>16}: median {r['median_s']:.3f} s over {args.runs} runs, {r['files']} files, "
                  f"largest {r['largest_file_bytes']} bytes")
        print(f"200 app servers / default: {ratio:.2f}x (target <= 2x); default target <= 1 s: "
              f"{'met' if base <= 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
