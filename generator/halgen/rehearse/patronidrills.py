"""Drills of the automatic PostgreSQL failover (pg_failover: patroni): lose, hang or hand
over the primary, lose etcd, and measure what the app sees through the load balancers.

They run after the other drills, in the order of PATRONI_DRILLS; each leaves the cluster
with a primary and every member back (pg-primary-kill leaves the old primary down for
pg-rejoin, which brings it back).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

from halgen.compiler.model import Node
from halgen.host.localpg import as_postgres
from halgen.host.processes import run, wait_until
from halgen.rehearse import patroni
from halgen.rehearse.datatier import run_pg_failover
from halgen.rehearse.drills import (
    Drill,
    DrillResult,
    Figure,
    _acked,
    _await_success,
    _failed,
    _first_success_after,
    _present,
    _skip,
    _writes,
)
from halgen.rehearse.http import Sample
from halgen.rehearse.stack import Rehearsal

KILL_TARGET_S = 20.0  # issue 17: from the kill to the first committed write, at the shipped defaults
SWITCHOVER_TARGET_S = 5.0


def _needs_patroni(r: Rehearsal, name: str, target: str, healthy: bool = True) -> DrillResult | None:
    """A skip result when the stack has no Patroni or no replica; else None, once the
    cluster is healthy (``healthy``: one primary, every other member streaming)."""
    if not r.stack.patroni:
        return _skip(name, target, "pg_failover is manual: no Patroni")
    if len(r.stack.dbs) < 2:
        return _skip(name, target, "no replica to fail over to")
    if healthy:
        patroni.wait_until_healthy(r.loopback, 120)
    return None


def _signal_db_node(r: Rehearsal, node: Node, signum: int) -> None:
    patroni.signal_node(r.loopback, r.pg, node, signum)


def _down(r: Rehearsal) -> list[Node]:
    return [n for n in r.stack.dbs if r.pg.get(n.name) is None or r.pg[n.name].poll() is not None]


def _sync(r: Rehearsal) -> bool:
    return r.stack.a.pg_replication == "sync"


def _loss_target(r: Rehearsal, seconds: float) -> str:
    return (f"writes resume by themselves within {seconds:g} s of the kill; "
            + ("0 acknowledged commits lost (sync)" if _sync(r) else "rows lost counted (async replication)"))


def _lose_primary(r: Rehearsal, name: str, note: str) -> tuple[Node, Node | None, list[Sample], float]:
    """SIGKILL Patroni and PostgreSQL on the primary under writes; (old, new, samples, moment)."""
    ls = r.loopback
    old = patroni.wait_for_leader(ls, 30)
    others = [n for n in r.stack.dbs if n != old]
    new: Node | None = None
    with _writes(r, note) as writer:
        time.sleep(1.5)
        killed = time.monotonic()
        _signal_db_node(r, old, signal.SIGKILL)
        r.pg[old.name].wait(10)
        try:
            new = patroni.wait_for_leader(ls, 90, among=others)
        except TimeoutError:
            pass
        _await_success(writer, killed, 30)
    return old, new, writer.stop(), killed


def pg_primary_kill(r: Rehearsal) -> DrillResult:
    """SIGKILL Patroni and PostgreSQL on the primary under writes: nobody runs a script."""
    name = "pg-primary-kill"
    target = _loss_target(r, KILL_TARGET_S)
    skipped = _needs_patroni(r, name, target)
    if skipped:
        return skipped
    old, new, samples, killed = _lose_primary(r, name, "written around a primary's loss")
    back = _first_success_after(samples, killed)
    acked = _acked(samples)
    lost: Figure = len(acked) - _present(r, new.name, acked) if new else "unknown"
    seconds = round(back.ended - killed, 2) if back else None
    passed = (new is not None and seconds is not None and seconds <= KILL_TARGET_S
              and (not _sync(r) or lost == 0))
    return DrillResult(name, target, passed=passed, figures={
        "killed primary": old.name,
        "promoted": new.name if new else "nobody (90 s)",
        "seconds until writes resume": seconds if seconds is not None else "never (30 s)",
        "rows acknowledged": len(acked),
        "rows lost": lost,
        "failed writes": len(_failed(samples)),
    })


REJOIN_TARGET = "the old primary follows the new one by itself (pg_rewind), streaming within 60 s"


def pg_rejoin(r: Rehearsal) -> DrillResult:
    """Start Patroni again on a lost primary (systemd restarts it on a node): it must rewind
    and stream from the new primary without a hand on it."""
    name = "pg-rejoin"
    skipped = _needs_patroni(r, name, REJOIN_TARGET, healthy=False)
    if skipped:
        return skipped
    ls = r.loopback
    down = _down(r)
    if not down:
        old, _, _, _ = _lose_primary(r, name, "written before a rejoin")
    else:
        old = down[0]
    log = ls.processes.log(f"patroni-{old.name}")
    before = log.read_text(errors="replace") if log.exists() else ""
    started = time.monotonic()
    r.pg[old.name] = patroni.start_patroni(ls, old)
    leader = patroni.wait_for_leader(ls, 30)
    try:
        wait_until(lambda: old.name in patroni.streaming(ls, leader) or None, 60,
                   f"{old.name} to stream from {leader.name}", interval=0.3)
        seconds: Figure = round(time.monotonic() - started, 2)
    except TimeoutError:
        seconds = "never (60 s)"
    after = log.read_text(errors="replace")[len(before):].lower()
    how = ("re-copied (reinit)" if "reinitializ" in after or "bootstrap" in after
           else "pg_rewind" if "pg_rewind" in after or "rewind" in after else "no rewind needed")
    return DrillResult(name, REJOIN_TARGET, passed=isinstance(seconds, float), figures={
        "node": old.name,
        "primary": leader.name,
        "seconds until streaming": seconds,
        "how it rejoined": how,
    })


SWITCHOVER_TARGET = (f"scripts/pg-failover.sh switchover: writes unavailable at most {SWITCHOVER_TARGET_S:g} s, "
                     "0 rows lost, the old primary streaming from the new one within 60 s")


def pg_switchover(r: Rehearsal) -> DrillResult:
    """A planned change of primary with the generated script, under writes."""
    name = "pg-switchover"
    skipped = _needs_patroni(r, name, SWITCHOVER_TARGET)
    if skipped:
        return skipped
    ls = r.loopback
    old = patroni.wait_for_leader(ls, 30)
    # In sync mode only the synchronous standby may take over (it has every acknowledged commit).
    candidate = patroni.sync_standby(ls, old) or next(n for n in r.stack.dbs if n != old and n not in _down(r))
    with _writes(r, "written around a switchover") as writer:
        time.sleep(1.5)
        started = time.monotonic()
        result = run_pg_failover(ls, "switchover", candidate.name)
        script_s = time.monotonic() - started
        _await_success(writer, started, 30)
        time.sleep(1.0)
    samples = writer.stop()
    acked = _acked(samples)
    new = patroni.wait_for_leader(ls, 30)
    lost = len(acked) - _present(r, new.name, acked)
    gap = _longest_write_gap(samples, started)
    try:
        wait_until(lambda: old.name in patroni.streaming(ls, new) or None, 60, f"{old.name} to follow", interval=0.3)
        follows: Figure = round(time.monotonic() - started, 2)
    except TimeoutError:
        follows = "never (60 s)"
    passed = (result.returncode == 0 and new == candidate and gap <= SWITCHOVER_TARGET_S and lost == 0
              and isinstance(follows, float))
    return DrillResult(name, SWITCHOVER_TARGET, passed=passed, figures={
        "from": old.name,
        "to": new.name,
        "script s": round(script_s, 2),
        "old primary streaming after s": follows,
        "writes unavailable s": round(gap, 2),
        "rows acknowledged": len(acked),
        "rows lost": lost,
        "failed writes": len(_failed(samples)),
    }, note="" if result.returncode == 0 else f"pg-failover.sh exit {result.returncode}: "
                                              f"{(result.stderr or result.stdout).strip()[-300:]}")


def _longest_write_gap(samples: list[Sample], since: float) -> float:
    """The longest time after ``since`` with no write committed: between two commits (or from
    ``since`` to the first one)."""
    ends = sorted(s.ended for s in samples if s.status == 201 and s.ended >= since)
    moments = [since, *ends]
    return max((b - a for a, b in zip(moments, moments[1:], strict=False)), default=float("inf"))


ETCD_MEMBER_TARGET = "no failover and 0 failed writes while one etcd member is down"


def etcd_member_loss(r: Rehearsal) -> DrillResult:
    """Kill one etcd member (one not on the primary's node) for longer than the lock's TTL."""
    name = "etcd-member-loss"
    skipped = _needs_patroni(r, name, ETCD_MEMBER_TARGET)
    if skipped:
        return skipped
    leader = patroni.wait_for_leader(r.loopback, 30)
    victim = next(n for n in reversed(r.stack.etcd_members) if n != leader)
    hold = r.stack.a.patroni_ttl + 2 * r.stack.a.patroni_loop_wait
    outage = _etcd_outage(r, [victim], hold, "written while an etcd member was down")
    return DrillResult(name, ETCD_MEMBER_TARGET, passed=outage.quiet(leader), figures={
        "member stopped": victim.name,
        "held for s": hold,
        **outage.figures(),
    })


DCS_TARGET = "every etcd member down: the primary keeps accepting writes (failsafe_mode), 0 failed writes"


def dcs_loss(r: Rehearsal) -> DrillResult:
    """Stop every etcd member for twice the lock's TTL under writes, then start them again."""
    name = "dcs-loss"
    skipped = _needs_patroni(r, name, DCS_TARGET)
    if skipped:
        return skipped
    ls = r.loopback
    leader = patroni.wait_for_leader(ls, 30)
    time.sleep(r.stack.a.patroni_loop_wait * 2)  # every member has confirmed the failsafe list
    hold = r.stack.a.patroni_ttl * 2
    outage = _etcd_outage(r, list(r.stack.etcd_members), hold, "written while etcd was down")
    after = patroni.wait_for_leader(ls, 60)
    # Members that were restarted serve reads before they caught up: give every Patroni
    # two loops on a settled etcd before the next drill asks it to act.
    time.sleep(2 * r.stack.a.patroni_loop_wait)
    return DrillResult(name, DCS_TARGET, passed=outage.quiet(leader), figures={
        "etcd down for s": hold,
        **outage.figures(),
        "primary after etcd is back": after.name,
    })


@dataclass(frozen=True)
class EtcdOutage:
    leaders_seen: set[str]
    samples: list[Sample]

    def quiet(self, leader: Node) -> bool:
        """Nothing the app sees: the same primary throughout and no failed write."""
        return self.leaders_seen == {leader.name} and not _failed(self.samples) and bool(self.samples)

    def figures(self) -> dict[str, Figure]:
        return {"primaries seen": ", ".join(sorted(self.leaders_seen)) or "none", "writes": len(self.samples),
                "failed writes": len(_failed(self.samples))}


def _etcd_outage(r: Rehearsal, members: list[Node], hold: float, note: str) -> EtcdOutage:
    """Stop ``members`` under writes for ``hold`` seconds, watching who is primary; start them again."""
    ls = r.loopback
    with _writes(r, note) as writer:
        time.sleep(1.0)
        for member in members:
            ls.processes.stop(r.pg[f"etcd-{member.name}"])
        leaders_seen = _watch_leaders(r, hold)
    samples = writer.stop()
    for member in members:
        r.pg[f"etcd-{member.name}"] = patroni.start_etcd(ls, member)
    for member in members:
        patroni.wait_for_etcd(ls, member)
    return EtcdOutage(leaders_seen, samples)


def _watch_leaders(r: Rehearsal, seconds: float) -> set[str]:
    """Which nodes Patroni reports as primary, polled for ``seconds``."""
    seen: set[str] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen.update(n.name for n in patroni.leaders(r.loopback))
        time.sleep(0.5)
    return seen


HANG_TARGET = ("a hung primary is fenced (its watchdog resets it, or it demotes itself when it resumes) and "
               "replaced; no write is acknowledged by it after the new primary acknowledged one")


@dataclass(frozen=True)
class DirectWrite:
    node: str
    started: float
    ended: float
    ok: bool


def pg_primary_hang(r: Rehearsal) -> DrillResult:
    """SIGSTOP Patroni and PostgreSQL on the primary and write to every DB node directly the
    whole time, counting who accepts. Its watchdog (the softdog stand-in) resets the node
    when the pings stop; what it did not reset is resumed after the failover."""
    name = "pg-primary-hang"
    skipped = _needs_patroni(r, name, HANG_TARGET)
    if skipped:
        return skipped
    ls = r.loopback
    old = patroni.wait_for_leader(ls, 30)
    others = [n for n in r.stack.dbs if n != old]
    watchdog = r.watchdogs.get(old.name)
    resets_before = len(watchdog.resets) if watchdog else 0
    writes: list[DirectWrite] = []
    stop = threading.Event()
    probes = [threading.Thread(target=_probe, args=(r, node, writes, stop), daemon=True) for node in r.stack.dbs]
    for probe in probes:
        probe.start()
    time.sleep(1.0)
    stopped = time.monotonic()
    _signal_db_node(r, old, signal.SIGSTOP)
    new: Node | None = None
    try:
        new = patroni.wait_for_leader(ls, 90, among=others)
        elected_s: Figure = round(time.monotonic() - stopped, 2)
    except TimeoutError:
        elected_s = "never (90 s)"
    finally:
        _signal_db_node(r, old, signal.SIGCONT)
    reset_at = watchdog.resets[resets_before] if watchdog and len(watchdog.resets) > resets_before else None
    if reset_at is not None:
        fenced = f"reset by its watchdog {reset_at - stopped:.1f} s after the hang"
        r.pg[old.name].wait(10)
        r.pg[old.name] = patroni.start_patroni(ls, old)  # the node boots again
    else:
        resumed = time.monotonic()
        try:
            wait_until(lambda: patroni.api_status(ls, old, "/replica") == 200 or None, 60,
                       f"{old.name} to demote itself", interval=0.3)
            fenced = f"demoted itself {time.monotonic() - resumed:.1f} s after resuming"
        except TimeoutError:
            fenced = "no (still primary 60 s after resuming)"
    time.sleep(2.0)
    stop.set()
    for probe in probes:
        probe.join(10)
    first_new = min((w.ended for w in writes if new and w.node == new.name and w.ok), default=None)
    late = [w for w in writes if w.node == old.name and w.ok and first_new is not None and w.ended > first_new]
    rejoined: Figure = "no"
    if new is not None:
        try:
            wait_until(lambda: old.name in patroni.streaming(ls, new) or None, 90, f"{old.name} to follow",
                       interval=0.5)
            rejoined = "yes"
        except TimeoutError:
            pass
    passed = new is not None and not fenced.startswith("no") and not late and rejoined == "yes"
    return DrillResult(name, HANG_TARGET, passed=passed, figures={
        "hung primary": old.name,
        "new primary": new.name if new else "none",
        "elected after s": elected_s,
        "fenced": fenced,
        "writes it acknowledged after the new primary's first": len(late),
        "direct writes acknowledged": sum(1 for w in writes if w.ok),
        "streaming again": rejoined,
    })


def _probe(r: Rehearsal, node: Node, writes: list[DirectWrite], stop: threading.Event) -> None:
    """INSERT on one node over its socket every 0.2 s, each bounded by 3 s."""
    sql = "INSERT INTO halgen_items (note) VALUES ('direct write during a hang') RETURNING id"
    while not stop.is_set():
        started = time.monotonic()
        try:
            out = run(as_postgres(f"{node.paths.pg_bin}/psql", "-X", "-A", "-t", "-q", "-h", node.paths.pg_run_dir,
                                  "-d", r.stack.a.pg_database, "-c", sql), timeout=3)
            ok = out.returncode == 0 and out.stdout.strip().isdigit()
        except Exception:  # noqa: BLE001 - a timeout or a refused connection is a failed write
            ok = False
        writes.append(DirectWrite(node.name, started, time.monotonic(), ok))
        time.sleep(0.2)


PATRONI_DRILLS: dict[str, Drill] = {
    "etcd-member-loss": etcd_member_loss,
    "dcs-loss": dcs_loss,
    "pg-switchover": pg_switchover,
    "pg-primary-kill": pg_primary_kill,
    "pg-rejoin": pg_rejoin,
    "pg-primary-hang": pg_primary_hang,
}
