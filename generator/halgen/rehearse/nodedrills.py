"""Drills on the stack booted from its user-data: a node loses its power under load (its
container's PID 1 is killed: every process at once, its network card gone, no goodbye
on any connection), as when a Linode's host fails, and the stack must carry on.

Load comes from the client module on the bridge, through the load balancers; each
drill reports its figures and whether the stack met the target."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from halgen.compiler.model import Node
from halgen.host.nspawn import Container
from halgen.rehearse.nodes import BootedStack, log

Sample = tuple[float, float, int, str]  # wall-clock start, seconds, HTTP status (0: none), body


@dataclass
class NodeDrill:
    name: str
    ok: bool
    summary: str
    figures: dict[str, float | int] = field(default_factory=dict)


class _Load:
    """The client module's closed-loop load, started now, ending by itself."""

    def __init__(self, booted: BootedStack, seconds: float, threads: int, method: str, path: str,
                 session: bool = False, lbs: int | None = None) -> None:
        specs = [",".join(booted.endpoint_args(lb)) for lb in booted.stack.lbs[:lbs]]
        argv = booted.client("load", str(seconds), str(threads), method, path, "session" if session else "none",
                             *specs)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.seconds = seconds

    def samples(self) -> list[Sample]:
        out, err = self.proc.communicate(timeout=self.seconds + 120)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the load client failed: {err.strip()[-500:]}")
        return [tuple(json.loads(line)) for line in out.splitlines()]  # type: ignore[misc]


def _ok(sample: Sample) -> bool:
    return 200 <= sample[2] < 300


def _recovery(samples: list[Sample], since: float) -> float | None:
    """Seconds from ``since`` until requests succeed for good: the end of the last failed
    one (0 when none failed); None when the last one still failed."""
    after = [s for s in samples if s[0] + s[1] >= since]
    if after and not _ok(after[-1]):
        return None
    failed = [s for s in after if not _ok(s)]
    return round(max(s[0] + s[1] for s in failed) - since, 1) if failed else 0.0


def app_power_off(booted: BootedStack) -> NodeDrill:
    """An app server loses power under load through every load balancer: no request may
    fail (HAProxy retries what never reached the app elsewhere)."""
    victim = booted.stack.apps[-1].name
    load = _Load(booted, seconds=45, threads=4, method="GET", path="/")
    time.sleep(5)
    log(f"drill app-power-off: pulling {victim}'s plug under load")
    booted.containers[victim].pull_plug()
    samples = load.samples()
    failed = [s for s in samples if not _ok(s)]
    slowest = max((s[1] for s in samples), default=0.0)
    figures = {"requests": len(samples), "failed": len(failed), "slowest_s": round(slowest, 1)}
    return NodeDrill("app-power-off", not failed and len(samples) > 0,
                     f"{victim} off under load: {len(samples)} requests, {len(failed)} failed, slowest {slowest:.1f} s",
                     figures)


def redis_master_power_off(booted: BootedStack) -> NodeDrill:
    """The Redis master loses power while one client uses its session: Sentinel promotes
    the replica; seconds until sessions work again, and whether the session survived."""
    victim = booted.stack.redis[0].name
    load = _Load(booted, seconds=40, threads=1, method="GET", path="/session", session=True, lbs=1)
    time.sleep(4)
    log(f"drill redis-power-off: pulling {victim}'s plug")
    killed = time.time()
    booted.containers[victim].pull_plug()
    samples = load.samples()
    recovered = _recovery(samples, killed)
    visits = [int(s[3].split("=", 1)[1]) for s in samples if _ok(s) and s[3].startswith("visits=")]
    kept = all(b > a for a, b in zip(visits, visits[1:], strict=False)) and len(visits) > 1
    figures = {"requests": len(samples), "failed": sum(not _ok(s) for s in samples),
               "recovery_s": -1 if recovered is None else recovered, "session_kept": int(kept)}
    text = "never" if recovered is None else f"after {recovered} s"
    return NodeDrill("redis-power-off", recovered is not None and kept,
                     f"{victim} off: sessions work again {text}, the session {'survived' if kept else 'was lost'}",
                     figures)


SSH_STAND_IN = """#!/usr/bin/env bash
# ssh for the drill's operator: runs the command in the booted node with that address,
# as the user named, through its shell, as sshd would; a powered-off node is unreachable.
while [[ "$1" == -o ]]; do shift 2; done
target="$1"; shift
pid="$(awk -v a="${target#*@}" '$1 == a {print $2}' "$(dirname "$0")/nodes")"
if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
    echo "ssh: connect to host ${target#*@} port 22: No route to host" >&2
    exit 255
fi
exec nsenter -t "$pid" -m -u -i -n -p -- runuser -u "${target%@*}" -- bash -c "$*"
"""


def _missing_on(booted: BootedStack, node: Node, ids: list[int]) -> int:
    """How many of the items ``ids`` the node's database lacks (-1: it did not answer)."""
    array = ",".join(map(str, ids))
    found = booted.containers[node.name].run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-d", booted.stack.a.pg_database, "-c",
         f"SELECT count(*) FROM halgen_items WHERE id = ANY('{{{array}}}'::bigint[])"])
    return len(ids) - int(found.stdout.strip() or 0) if found.returncode == 0 else -1


# With Patroni: from the plug pulled to writes working again (its TTL, 15 s by default, plus a loop).
PATRONI_POWER_OFF_TARGET_S = 30


def pg_primary_power_off(booted: BootedStack) -> NodeDrill:
    """The PostgreSQL primary loses power under writes. With Patroni nobody acts: seconds
    until writes work again, and acknowledged writes lost (none allowed in sync mode).
    Without it, the operator runs the generated scripts/pg-failover.sh at once (through
    an ssh stand-in into the nodes)."""
    stack = booted.stack
    old, new = stack.dbs[0], stack.dbs[1]
    if stack.patroni:
        return _pg_power_off_automatic(booted, old, new)
    operator = booted.work / "operator"
    operator.mkdir(exist_ok=True)
    (operator / "ssh").write_text(SSH_STAND_IN)
    (operator / "ssh").chmod(0o755)
    address = {node.name: node.address for node in stack.nodes}
    (operator / "nodes").write_text("".join(f"{address[name]} {c.init_pid()}\n" for name, c in booted.containers.items()
                                            if isinstance(c, Container) and c.running()))
    load = _Load(booted, seconds=50, threads=2, method="POST", path="/items")
    time.sleep(5)
    log(f"drill pg-power-off: pulling {old.name}'s plug under writes, then scripts/pg-failover.sh {new.name}")
    killed = time.time()
    booted.containers[old.name].pull_plug()
    failover = subprocess.run(["bash", str(booted.repo / "scripts" / "pg-failover.sh"), new.name,
                               "--old-primary-is-gone"], capture_output=True, text=True, timeout=300,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PG_SSH": str(operator / "ssh")})
    failover_s = round(time.time() - killed, 1)
    samples = load.samples()
    recovered = _recovery(samples, killed)
    acknowledged = [int(s[3]) for s in samples if s[2] == 201 and s[0] + s[1] < killed and s[3].isdigit()]
    lost = _missing_on(booted, new, acknowledged)
    figures = {"writes": len(samples), "failed": sum(not _ok(s) for s in samples), "failover_script_s": failover_s,
               "writes_resume_s": -1 if recovered is None else recovered, "acknowledged_before": len(acknowledged),
               "lost": lost}
    if failover.returncode != 0:
        return NodeDrill("pg-power-off", False, f"pg-failover.sh {new.name} failed: "
                         f"{failover.stderr.strip()[-800:]}", figures)
    text = "never" if recovered is None else f"after {recovered} s"
    return NodeDrill("pg-power-off", recovered is not None and lost == 0,
                     f"{old.name} off, pg-failover.sh {new.name} done in {failover_s} s: writes work again {text}, "
                     f"{lost} of {len(acknowledged)} acknowledged writes lost", figures)


def _pg_power_off_automatic(booted: BootedStack, old: Node, new: Node) -> NodeDrill:
    stack = booted.stack
    load = _Load(booted, seconds=50, threads=2, method="POST", path="/items")
    time.sleep(5)
    log(f"drill pg-power-off: pulling {old.name}'s plug under writes; Patroni promotes a replica by itself")
    killed = time.time()
    booted.containers[old.name].pull_plug()
    samples = load.samples()
    recovered = _recovery(samples, killed)
    acknowledged = [int(s[3]) for s in samples if s[2] == 201 and s[3].isdigit()]
    lost = _missing_on(booted, new, acknowledged)
    figures = {"writes": len(samples), "failed": sum(not _ok(s) for s in samples),
               "writes_resume_s": -1 if recovered is None else recovered, "acknowledged": len(acknowledged),
               "lost": lost}
    text = "never" if recovered is None else f"after {recovered} s"
    sync = stack.a.pg_replication == "sync"
    ok = recovered is not None and recovered <= PATRONI_POWER_OFF_TARGET_S and lost >= 0 and (lost == 0 or not sync)
    return NodeDrill("pg-power-off", ok, f"{old.name} off, nobody acting: writes work again {text} "
                     f"(target {PATRONI_POWER_OFF_TARGET_S} s), {lost} of {len(acknowledged)} acknowledged writes "
                     f"lost{' (sync: none allowed)' if sync else ' (async: counted)'}", figures)


NODE_DRILLS: dict[str, Callable[[BootedStack], NodeDrill]] = {
    "app-power-off": app_power_off,
    "redis-power-off": redis_master_power_off,
    "pg-power-off": pg_primary_power_off,
}
