"""Drills: break one part of the running stack, keep traffic flowing, measure the figure
that matters, and compare it with the target. Each restores what it broke when it can.

They run in this order (the PostgreSQL failover last: it leaves the old primary down).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from halgen.compiler.model import Node
from halgen.host.processes import run, wait_until
from halgen.rehearse import patroni
from halgen.rehearse.datatier import as_postgres, master_address, psql, run_pg_failover, start_pg, start_redis
from halgen.rehearse.http import Load, Sample, request
from halgen.rehearse.layout import RehearsalError
from halgen.rehearse.stack import Rehearsal

Figure = int | float | str


@dataclass(frozen=True)
class DrillResult:
    name: str
    target: str
    passed: bool
    figures: dict[str, Figure] = field(default_factory=dict)
    note: str = ""
    skipped: bool = False


def _failed(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if not s.ok]


# Starman writes a response's headers and its body in two write() calls: a worker
# killed or stopped between them leaves nginx with a response it has already begun
# sending to the client: nobody can retry that request. It is the one request each
# victim worker was answering at that instant; such cuts are counted apart, and the
# target allows no other failure and no more cuts than the victim has workers.
CUT_NOTE = ("; a response the victim had begun when it stopped cannot be retried by anyone (at most one per "
            "worker: counted as cut mid-response)")


def _app_fault_passed(samples: list[Sample], failed: list[Sample], workers: int) -> bool:
    cut = [s for s in failed if s.cut]
    return bool(samples) and len(failed) == len(cut) and len(cut) <= workers


def _first_success_after(samples: list[Sample], moment: float) -> Sample | None:
    return next((s for s in sorted(samples, key=lambda s: s.ended) if s.ok and s.started > moment), None)


def _await_success(load: Load, moment: float, timeout: float) -> None:
    """Until a request sent after ``moment`` succeeds (or ``timeout``), then one more second
    of traffic, to see that it holds."""
    try:
        wait_until(lambda: _first_success_after(load.snapshot(), moment), timeout, "a request to succeed")
    except TimeoutError:
        pass  # the drill reports "never"
    time.sleep(1.0)


def _signal_app(r: Rehearsal, node: Node, signum: int) -> None:
    for proc in r.app_servers[node.name]:
        r.loopback.processes.signal_group(proc, signum)


def _skip(name: str, target: str, why: str) -> DrillResult:
    return DrillResult(name, target, passed=True, note=f"skipped: {why}", skipped=True)


# --- app servers ---------------------------------------------------------------------

APP_KILL_TARGET = "0 failed idempotent requests" + CUT_NOTE


def app_kill(r: Rehearsal) -> DrillResult:
    """SIGKILL one app server's PSGI server while GETs flow through every load balancer."""
    name = "app-kill"
    if len(r.stack.apps) < 2:
        return _skip(name, APP_KILL_TARGET, "one app server has no peer to take over")
    victim = r.stack.apps[-1]
    with Load(r.endpoints, threads=4, timeout=r.stack.a.lb_read_timeout_s + 10) as load:
        time.sleep(1.0)
        killed = time.monotonic()
        _signal_app(r, victim, signal.SIGKILL)
        time.sleep(4.0)
    samples = load.stop()
    failed = _failed(samples)
    r.start_app_servers(victim)  # back in service for the drills that follow
    workers = r.stack.a.app_workers * r.stack.a.app_instances
    return DrillResult(name, APP_KILL_TARGET, passed=_app_fault_passed(samples, failed, workers), figures={
        "victim": victim.name,
        "requests": len(samples),
        "requests after the kill": sum(1 for s in samples if s.started >= killed),
        "failed requests": len(failed),
        "cut mid-response": sum(1 for s in failed if s.cut),
    }, note=_first_errors(failed))


OUT_OF_ROTATION_TARGET_S = 5.0


def app_hang(r: Rehearsal) -> DrillResult:
    """SIGSTOP one app server's PSGI server under load and keep it stopped until the figures
    are taken. A hang, unlike a crash, still accepts connections (the kernel completes
    them): only a timeout tells. Each load balancer's HAProxy must take the victim out
    by its active check within seconds and send it nothing after that; the requests it
    held cost one read timeout each, then are answered by another instance."""
    name = "app-hang"
    a = r.stack.a
    bound = a.lb_connect_timeout_s + a.lb_read_timeout_s
    target = (f"out of rotation on every load balancer within {OUT_OF_ROTATION_TARGET_S:g} s, 0 requests sent to "
              f"it after that, 0 failed requests, none slower than {bound} s (connect + read timeout){CUT_NOTE}")
    if len(r.stack.apps) < 2:
        return _skip(name, target, "one app server has no peer to take over")
    victim = r.stack.apps[0]  # not app-kill's victim, which may still be counted as failed
    names = {f"{i.node}-{i.port}" for i in victim.instances}
    hang_s = a.lb_read_timeout_s + 3  # the requests it held time out and are answered elsewhere
    out_at: dict[str, tuple[float, int]] = {}  # load balancer -> (seconds after the stop, requests sent so far)
    with Load(r.endpoints, threads=4, timeout=bound + hang_s + 10) as load:
        time.sleep(1.0)
        stopped = time.monotonic()
        _signal_app(r, victim, signal.SIGSTOP)
        try:
            while time.monotonic() - stopped < hang_s:
                for lb, state in r.balancer_states().items():
                    victims = [state[n] for n in names if n in state]
                    if lb not in out_at and victims and not any(v.up for v in victims):
                        out_at[lb] = (time.monotonic() - stopped, sum(v.sent for v in victims))
                time.sleep(0.1)
            samples = load.stop()
            sent_end = {lb: sum(state[n].sent for n in names if n in state)
                        for lb, state in r.balancer_states().items()}
        finally:
            _signal_app(r, victim, signal.SIGCONT)
    failed = _failed(samples)
    slowest = max((s.seconds for s in samples), default=0.0)
    workers = a.app_workers * a.app_instances
    taken_out = len(out_at) == len(r.stack.lbs)
    out_after = max((t for t, _ in out_at.values()), default=float("inf"))
    sent_after = sum(sent_end.get(lb, 0) - sent for lb, (_, sent) in out_at.items())
    passed = (_app_fault_passed(samples, failed, workers) and slowest <= bound + 1 and taken_out
              and out_after <= OUT_OF_ROTATION_TARGET_S and sent_after == 0)
    return DrillResult(name, target, passed=passed, figures={
        "victim": victim.name,
        "stopped for s": hang_s,
        "out of rotation after s": round(out_after, 1) if taken_out else "never",
        "requests sent to it after": sent_after,
        "requests": len(samples),
        "failed requests": len(failed),
        "cut mid-response": sum(1 for s in failed if s.cut),
        "slowest request s": round(slowest, 2),
    }, note=_first_errors(failed))


def _first_errors(failed: list[Sample], count: int = 3) -> str:
    kinds = sorted({f"{s.status or 'no answer'}: {' '.join(s.body.split())[:80]}" for s in failed})
    return "; ".join(kinds[:count])


# --- Redis -----------------------------------------------------------------------

REDIS_TARGET = "sessions readable and writable again within 10 s"


def redis_kill(r: Rehearsal) -> DrillResult:
    """SIGKILL the Redis master while a client keeps reading and writing its session."""
    name = "redis-kill"
    if not r.stack.sentinels or len(r.stack.redis) < 2:
        return _skip(name, REDIS_TARGET, "no Sentinel-managed replica to fail over to")
    ls = r.loopback
    victim = next(n for n in r.stack.redis if n.address == master_address(ls))
    endpoint = r.endpoints[0]
    cookie = request(endpoint, "GET", "/session").cookie
    with Load([endpoint], path="/session", cookie=cookie, threads=1, pause=0.05, timeout=10) as load:
        time.sleep(1.0)
        killed = time.monotonic()
        ls.processes.signal_group(r.redis[victim.name], signal.SIGKILL)
        _await_success(load, killed, 30)
    samples = load.stop()
    back = _first_success_after(samples, killed)
    before = [_visits(s) for s in samples if s.ok and s.ended < killed]
    seconds = round(back.ended - killed, 2) if back else None
    kept = bool(back and before and _visits(back) > max(before))
    r.redis[victim.name] = start_redis(ls, victim)  # it rejoins as a replica of the new master
    return DrillResult(name, REDIS_TARGET, passed=seconds is not None and seconds <= 10 and kept, figures={
        "killed master": victim.name,
        "new master": next((n.name for n in r.stack.redis if n.address == master_address(ls)), "?"),
        "seconds to recover": seconds if seconds is not None else "never (30 s)",
        "session kept": "yes" if kept else "no",
        "failed requests": len(_failed(samples)),
    })


def _visits(sample: Sample) -> int:
    return int(sample.body.removeprefix("visits="))


# --- PostgreSQL --------------------------------------------------------------------

def _writes(r: Rehearsal, note: str) -> Load:
    """Clients that add items through the load balancers (POST: never retried by nginx)."""
    return Load(r.endpoints, method="POST", path="/items", body=note.encode(), threads=2, pause=0.02,
                timeout=r.stack.a.lb_read_timeout_s + 10)


def _acked(samples: list[Sample]) -> list[int]:
    """Ids of the items whose commit the app confirmed (201)."""
    return [int(s.body) for s in samples if s.status == 201]


def _present(r: Rehearsal, node: str, ids: list[int]) -> int:
    if not ids:
        return 0
    array = "{" + ",".join(map(str, ids)) + "}"
    return int(psql(r.loopback, node, f"SELECT count(*) FROM halgen_items WHERE id = ANY('{array}'::bigint[])",
                    database=r.stack.a.pg_database))


REPLICA_TARGET = "the replica has every row written while it was down"


def replica_restart(r: Rehearsal) -> DrillResult:
    """Restart a PostgreSQL replica while writes go on; time its catch-up."""
    name = "replica-restart"
    if len(r.stack.dbs) < 2:
        return _skip(name, REPLICA_TARGET, "no replica")
    ls = r.loopback
    if r.stack.patroni:
        leader = patroni.wait_for_leader(ls, 30)
        replica = next(n for n in r.stack.dbs if n != leader)
        ls.processes.stop(r.pg[replica.name])  # Patroni stops PostgreSQL cleanly, as systemctl stop does
    else:
        replica = r.stack.dbs[1]
        stopped = run(as_postgres(f"{replica.paths.pg_bin}/pg_ctl", "stop", "-D", replica.paths.pg_data, "-m",
                                  "fast", "-w"), timeout=60)
        if stopped.returncode != 0:
            raise RehearsalError(f"pg_ctl stop on {replica.name}: {stopped.stderr.strip()}")
        r.pg[replica.name].wait(30)
    with _writes(r, "written while a replica was down") as writer:
        time.sleep(2.0)
        writer.halt()  # with synchronous replication to this replica alone, writes wait for it
        if r.stack.patroni:
            r.pg[replica.name] = patroni.start_patroni(ls, replica)
            patroni.wait_until_healthy(ls, 60)
        else:
            r.pg[replica.name] = start_pg(ls, replica.name)
        started = time.monotonic()
    acked = _acked(writer.stop())
    try:
        wait_until(lambda: _present(r, replica.name, acked) == len(acked), 60, f"{replica.name} to catch up")
        seconds: Figure = round(time.monotonic() - started, 2)
    except TimeoutError:
        seconds = "never (60 s)"
    missing = len(acked) - _present(r, replica.name, acked)
    return DrillResult(name, REPLICA_TARGET, passed=bool(acked) and missing == 0, figures={
        "replica": replica.name,
        "rows written around the restart": len(acked),
        "seconds to catch up after start": seconds,
        "rows missing on the replica": missing,
    })


def pg_failover(r: Rehearsal) -> DrillResult:
    """Lose the PostgreSQL primary under writes; run the generated scripts/pg-failover.sh.

    Every PostgreSQL process of the node gets SIGKILL, as if it lost power."""
    name = "pg-failover"
    sync = r.stack.a.pg_replication == "sync"
    target = "writes resume" + ("; nothing committed before the loss is missing" if sync else
                                " (asynchronous replication: the last commits may be lost; counted)")
    if len(r.stack.dbs) < 2:
        return _skip(name, target, "no replica to promote")
    if r.stack.patroni:
        return _skip(name, target, "Patroni fails over by itself: see pg-primary-kill")
    ls = r.loopback
    old, new = r.stack.dbs[0], r.stack.dbs[1]
    with _writes(r, "written around a failover") as writer:
        time.sleep(1.5)
        lost = time.monotonic()
        ls.processes.signal_group(r.pg[old.name], signal.SIGKILL)
        failover = run_pg_failover(ls, new.name, "--old-primary-is-gone")
        script_s = time.monotonic() - lost
        if failover.returncode == 0:
            _await_success(writer, lost, 60)
    samples = writer.stop()
    back = _first_success_after(samples, lost)
    committed_before = [int(s.body) for s in samples if s.status == 201 and s.ended < lost]
    acked = _acked(samples)
    lost_rows = len(acked) - _present(r, new.name, acked) if failover.returncode == 0 else "unknown"
    passed = failover.returncode == 0 and back is not None and (not sync or lost_rows == 0)
    return DrillResult(name, target, passed=passed, figures={
        "promoted": new.name,
        "failover script s": round(script_s, 2),
        "seconds until writes resume": round(back.ended - lost, 2) if back else "never (60 s)",
        "rows committed before the loss": len(committed_before),
        "rows lost": lost_rows,
        "failed writes": len(_failed(samples)),
    }, note="" if failover.returncode == 0 else f"pg-failover.sh exit {failover.returncode}: "
                                                  f"{failover.stderr.strip()[-300:]}")


Drill = Callable[[Rehearsal], DrillResult]
# The drills of any stack; with Patroni, halgen.rehearse.drillset adds its own after them.
BASE_DRILLS: dict[str, Drill] = {
    "app-kill": app_kill,
    "app-hang": app_hang,
    "redis-kill": redis_kill,
    "replica-restart": replica_restart,
    "pg-failover": pg_failover,
}
