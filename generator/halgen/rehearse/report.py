"""The rehearsal's report: what ran, the smoke test, each drill's figure, the benchmark."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from halgen.rehearse.bench import BenchResult
from halgen.rehearse.drills import DrillResult
from halgen.rehearse.stack import Check


@dataclass
class Report:
    project: str
    loopback_subnet: str
    directory: str
    nodes: list[str] = field(default_factory=list)
    smoke: list[Check] = field(default_factory=list)
    drills: list[DrillResult] = field(default_factory=list)
    bench: BenchResult | None = None
    failure: str = ""  # why the rehearsal stopped early
    interrupted: bool = False
    strays: list[str] = field(default_factory=list)  # processes left after the stop (should be none)
    removed: bool = False

    @property
    def misses(self) -> list[str]:
        found = [f"smoke: {c.name}" for c in self.smoke if not c.ok]
        found += [f"drill {d.name}" for d in self.drills if not d.passed]
        if self.bench is not None and not self.bench.passed:
            found.append("benchmark")
        if self.failure:
            found.append(f"rehearsal: {self.failure}")
        if self.strays:
            found.append(f"{len(self.strays)} process(es) left running")
        return found

    @property
    def passed(self) -> bool:
        return not self.misses and not self.interrupted

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.bench is not None:
            data["bench"]["rows"] = [
                {"connections": row.connections, "rps_ratio": row.rps_ratio, "passed": row.passed,
                 **{name: {"rps": f.rps, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms, "errors": f.errors}
                    for name, f in (("generated", row.generated), ("seed", row.seed))}}
                for row in self.bench.rows]
            data["bench"].update(passed=self.bench.passed, target=self.bench.target)
            transit = self.bench.transit
            if transit is not None:
                data["bench"]["vpc_tls"] = {
                    "path": transit.path, "rps_cost": transit.rps_cost,
                    **{key: {"rps": f.rps, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms, "errors": f.errors}
                       for key, f in (("on", transit.tls), ("off", transit.plain))}}
        data["passed"] = self.passed
        data["misses"] = self.misses
        return data

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def text(self) -> str:
        lines = [f"halgen rehearse: {self.project} on {self.loopback_subnet}: {len(self.nodes)} nodes "
                 f"({', '.join(self.nodes)})"]
        if self.smoke:
            ok = sum(c.ok for c in self.smoke)
            lines.append(f"smoke test through the load balancers: {ok}/{len(self.smoke)} checks passed")
            lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.smoke]
        if self.bench is not None:
            lines += _bench_lines(self.bench)
        if self.drills:
            lines.append("drills:")
        for drill in self.drills:
            verdict = "SKIP" if drill.skipped else "PASS" if drill.passed else "MISS"
            lines.append(f"  {drill.name:<16} {verdict}  target: {drill.target}")
            if drill.figures:
                lines.append("      " + ", ".join(f"{k}: {v}" for k, v in drill.figures.items()))
            if drill.note:
                lines.append(f"      {drill.note}")
        if self.failure:
            lines.append(f"stopped early: {self.failure}")
        if self.interrupted:
            lines.append("interrupted")
        cleanup = "removed" if self.removed else "kept (--keep)"
        lines.append(f"stopped everything it started; {self.directory} {cleanup}; "
                     + (f"LEFT RUNNING: {'; '.join(self.strays)}" if self.strays else "no process left"))
        lines.append("result: every target met" if self.passed else
                     "result: " + ("interrupted" if self.interrupted else f"missed: {'; '.join(self.misses)}"))
        return "\n".join(lines) + "\n"


def _bench_lines(bench: BenchResult) -> list[str]:
    rounds = len(bench.rows[0].generated.rounds) if bench.rows else 0
    lines = [f"benchmark: GET {bench.path} through the load balancer (generated: nginx + HAProxy; seed: nginx), "
             f"wrk, {rounds} round(s) x {bench.duration_s:g} s per config and load, alternating",
             f"  {'conns':>5}  {'generated req/s':>15} {'p50':>6} {'p99 ms':>7} {'err':>4}  "
             f"{'seed req/s':>10} {'p50':>6} {'p99 ms':>7} {'err':>4}  {'ratio':>6}  target"]
    for row in bench.rows:
        g, s = row.generated, row.seed
        lines.append(f"  {row.connections:>5}  {g.rps:>15.0f} {g.p50_ms:>6.2f} {g.p99_ms:>7.2f} {g.errors:>4}  "
                     f"{s.rps:>10.0f} {s.p50_ms:>6.2f} {s.p99_ms:>7.2f} {s.errors:>4}  {row.rps_ratio:>5.2f}x  "
                     f"{'met' if row.passed else 'MISSED'}")
    lines.append(f"  target: {bench.target}")
    transit = bench.transit
    if transit is not None:
        lines.append(f"TLS inside the VPC: GET {transit.path} (PostgreSQL and Redis per request) through the load "
                     "balancer, this stack against a twin with vpc_tls off")
        for figures in (transit.tls, transit.plain):
            lines.append(f"  {figures.name:<12} {figures.rps:>9.0f} req/s {figures.p50_ms:>8.2f} p50 ms "
                         f"{figures.p99_ms:>8.2f} p99 ms {figures.errors:>5} errors")
        lines.append(f"  cost: {transit.rps_cost:.1%} of requests per second")
    return lines
