"""Load-balancer designs for issue 15, measured side by side on the rehearsal's stack.

usage: python bench/lb_candidates.py [--rounds 3] [--duration 5] [--loads 15,30,60] [--hang 35] [--only A,B,F3]

Starts the default stack (3 app servers x 1 Starman x 5 workers) on loopback
127.23.0.0/24, stops its load balancers, then serves the first load balancer's address
and port with one candidate at a time and loads GET / with wrk, rotating the order of
the candidates every round. Candidates:
  A  the generated nginx config (as 'halgen rehearse --bench' runs it)
  B  the seed document's nginx config (bench.py's seed)
  C  HAProxy 2.6 alone: per-server maxconn = Starman workers, its own queue, active checks
     (C1: 1 thread, http-reuse safe; C2: 2 threads; C3: http-reuse always;
     C4: 1 thread, option http-server-close: one request per Starman connection;
     C5: C1 with maxconn = workers - 1, a worker kept free for the active checks;
     C6: C5 with max-reuse 100 and pool-max-conn 2, see HaproxyPlan)
  D  the generated nginx proxying to a local HAProxy that balances as C4 (D5: as C5; D6: as C6)
  E  generated nginx variants: E1 without the backup overflow entries; E2 without
     upstream keep-alive (max_conns kept); E3 as E2 with Starman --disable-keepalive
  F  Starlet (5 workers per instance) instead of Starman, behind HAProxy as C1 (F1) or C4 (F2);
     F3: workers that serve 100,000 requests each (F1's serve 1,000) behind C1; F4: F3 behind C5
Then the hang case: one Starman instance SIGSTOPped under load through C1, C4 and A.
Every process is started through the rehearsal, which stops them all on the way out.
Needs Debian's nginx, haproxy, starman, starlet, wrk and the rehearsal's servers.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from halgen.compiler import pipeline
from halgen.host.processes import wait_for_port, wait_until
from halgen.rehearse import bench, haproxy, nginx
from halgen.rehearse.stack import Rehearsal

SUBNET = "127.23.0.0/24"  # the tests use 127.20 and the rehearsal 127.21: no collision
STARLET_PORT_OFFSET = 100  # Starlet instances listen on each Starman port + this
NO_KEEPALIVE_PORT_OFFSET = 200  # Starman --disable-keepalive instances: port + this
LONG_LIVED_STARLET_PORT_OFFSET = 300  # Starlet whose workers serve 100,000 requests each: port + this
HAPROXY_BEHIND_NGINX_PORT = 8405
APP_HEALTH_PATH = "/healthz"  # the app's own: it answers only when PostgreSQL and Redis do
HANG_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("lbstudy requests=%d max_us=%d errors=%d non2xx=%d\\n", summary.requests,
    latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class HaproxyPlan:
    threads: int = 1
    reuse: str = "safe"
    # One request per server connection: a prefork worker is free again after each
    # response, so an active check never waits behind a kept-alive connection.
    server_close: bool = False
    # Server slots held back from each server's maxconn, so an active check always
    # finds a free prefork worker even when every connection is kept alive.
    spare: int = 0
    # HAProxy closes a server connection after this many requests (0: never), so a
    # prefork worker goes back to accept() and a queued connection (another load
    # balancer's, a check) gets a worker; and keeps at most pool_max idle ones per server.
    max_reuse: int = 0
    pool_max: int = 0


C6 = HaproxyPlan(spare=1, max_reuse=100, pool_max=2)
C7 = HaproxyPlan(spare=1, max_reuse=100)


@dataclass(frozen=True)
class Pair:
    """nginx in front of HAProxy: stopped together."""

    front: subprocess.Popen
    back: subprocess.Popen


Started = subprocess.Popen | Pair


@dataclass(frozen=True)
class Candidate:
    name: str
    what: str
    start: Callable[[], Started]


# --- config writers -------------------------------------------------------------


def haproxy_conf(directory: Path, bind: str, servers: list[str], workers: int, health_path: str,
                 plan: HaproxyPlan) -> str:
    """HAProxy as the balancer: each server takes `workers` requests at a time (Starman is
    prefork), the rest wait in HAProxy's queue where any server can pick them up."""
    server_side = "option http-server-close" if plan.server_close else f"http-reuse {plan.reuse}"
    lines = "\n".join(f"    server app{n}-{s.rsplit(':', 1)[1]} {s}" for n, s in enumerate(servers, 1))
    reuse_limits = (f" max-reuse {plan.max_reuse}" if plan.max_reuse else "") + (
        f" pool-max-conn {plan.pool_max}" if plan.pool_max else "")
    return f"""global
    nbthread {plan.threads}
    maxconn 4096
    stats socket {directory}/haproxy.sock mode 600 level admin
defaults
    mode http
    log stdout format raw local0 err
    option http-keep-alive
    timeout connect 2s
    timeout client 65s
    timeout http-keep-alive 65s
    # The generated nginx's read timeout: a hung server costs one of these.
    timeout server 30s
    timeout queue 10s
    timeout check 1s
    retries 1
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend web
    bind {bind}
    default_backend app
backend app
    balance leastconn
    {server_side}
    option httpchk GET {health_path}
    default-server check inter 1s fall 2 rise 2 maxconn {workers - plan.spare}{reuse_limits}
{lines}
"""


def upstream_replaced(conf: str, body: Callable[[str], str]) -> str:
    """The nginx config with its upstream block's body rewritten by `body`."""
    match = re.search(r"(upstream \S+ \{\n)(.*?)(\n    \})", conf, re.S)
    if not match:
        raise SystemExit("no upstream block in the generated nginx config")
    return conf[:match.start(2)] + body(match[2]) + conf[match.end(2):]


def without_backups(body: str) -> str:
    return re.sub(r"^\s*server \S+ backup .*\n", "", body, flags=re.M)


def without_keepalive(body: str) -> str:
    return re.sub(r"^\s*keepalive(_timeout|_requests)? .*\n?", "", body, flags=re.M)


def on_ports(offset: int) -> Callable[[str], str]:
    return lambda body: re.sub(r"(server [\d.]+:)(\d+)", lambda m: f"{m[1]}{int(m[2]) + offset}", body)


def to_local_haproxy(server: str) -> Callable[[str], str]:
    return lambda body: (f"        server {server} max_fails=0;\n"
                         "        keepalive 32;\n        keepalive_timeout 60s;\n        keepalive_requests 100000;")


# --- the study --------------------------------------------------------------------


class Study:
    def __init__(self, r: Rehearsal) -> None:
        self.r = r
        self.ls = r.loopback
        self.lb = r.stack.lbs[0]
        self.endpoint = r.endpoint(self.lb)
        self.dir = self.ls.base / "lbstudy"
        self.dir.mkdir(exist_ok=True)
        self.bind = f"{self.endpoint.address}:{self.endpoint.port}"
        self.generated = r.nginx_conf(self.lb).read_text()
        self.workers = r.stack.a.app_workers
        self.starman = [i.listen for i in r.stack.instances]

    def _nginx(self, name: str, conf: str) -> subprocess.Popen:
        path = self.dir / f"{name}.conf"
        path.write_text(conf)
        log = self.dir / f"{name}-error.log"
        problem = nginx.check_config(path, log)
        if problem:
            raise SystemExit(f"nginx refuses {path}: {problem}")
        proc = self.ls.spawn(nginx.foreground(path, log), f"lbstudy-{name}", cwd=self.dir)
        wait_for_port(self.endpoint.address, self.endpoint.port, 15)
        return proc

    def _haproxy(self, name: str, bind: str, servers: list[str], plan: HaproxyPlan) -> subprocess.Popen:
        work = self.dir / name
        work.mkdir(exist_ok=True)
        conf = work / "haproxy.cfg"
        conf.write_text(haproxy_conf(work, bind, servers, self.workers, APP_HEALTH_PATH, plan))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"haproxy refuses {conf}: {check.stderr.strip()}")
        proc = self.ls.spawn(["haproxy", "-db", "-f", str(conf)], f"lbstudy-{name}", cwd=work)
        if bind.startswith("unix@"):
            wait_until(lambda: Path(bind[5:].split()[0]).exists() or None, 15, f"{name}: {bind}")
        else:
            address, port = bind.rsplit(":", 1)
            wait_for_port(address, int(port), 15)
        # Wait for the first checks, so no round starts with servers still marked down.
        wait_until(lambda: haproxy.all_up(work / "haproxy.sock") or None, 15,
                   f"{name}: every server UP")
        return proc

    def seed(self) -> subprocess.Popen:
        main = bench.write_seed_config(self.r, self.dir / "seed", self.bind, self.starman)
        proc = self.ls.spawn(nginx.foreground(main, self.dir / "seed" / "error.log"), "lbstudy-seed", cwd=self.dir)
        wait_for_port(self.endpoint.address, self.endpoint.port, 15)
        return proc

    def nginx_over_haproxy(self, name: str = "D", plan: HaproxyPlan = HaproxyPlan(server_close=True),
                           buffered_log: bool = False, unix: bool = False,
                           servers: list[str] | None = None) -> Pair:
        """The generated nginx (edge) proxying to a local HAProxy that balances."""
        if unix:
            path = self.dir / f"{name}-haproxy.sock"
            haproxy_bind, server = f"unix@{path} mode 666", f"unix:{path}"
        else:
            haproxy_bind = server = f"{self.endpoint.address}:{HAPROXY_BEHIND_NGINX_PORT}"
        back = self._haproxy(f"{name}-haproxy", haproxy_bind, servers or self.starman, plan)
        conf = upstream_replaced(self.generated, to_local_haproxy(server))
        if buffered_log:
            conf = re.sub(r"(access_log \S+ upstreamlog);", r"\1 buffer=64k flush=1s;", conf)
        front = self._nginx(name, conf)
        return Pair(front, back)

    def start_app_set(self, offset: int, command: Callable[[list[str], str, int], list[str]], label: str) -> list[str]:
        """A second set of app servers beside the Starman ones (same app, env and workers)."""
        return self.r.start_beside(offset, command, f"lbstudy-{label}")[0]

    def candidates(self) -> list[Candidate]:
        starlet = self.start_app_set(STARLET_PORT_OFFSET, self._starlet_argv, "starlet")
        long_lived = self.start_app_set(LONG_LIVED_STARLET_PORT_OFFSET, partial(self._starlet_argv, per_child=100_000),
                                        "starlet-long")
        self.start_app_set(NO_KEEPALIVE_PORT_OFFSET, _starman_without_keepalive, "starman-nokeepalive")
        gen = self.generated
        return [
            Candidate("A", "generated nginx", lambda: self._nginx("A", gen)),
            Candidate("B", "seed nginx", self.seed),
            Candidate("C1", "HAProxy, 1 thread, reuse safe",
                      lambda: self._haproxy("C1", self.bind, self.starman, HaproxyPlan())),
            Candidate("C2", "HAProxy, 2 threads, reuse safe",
                      lambda: self._haproxy("C2", self.bind, self.starman, HaproxyPlan(threads=2))),
            Candidate("C3", "HAProxy, 1 thread, reuse always",
                      lambda: self._haproxy("C3", self.bind, self.starman, HaproxyPlan(reuse="always"))),
            Candidate("C4", "HAProxy, 1 thread, http-server-close",
                      lambda: self._haproxy("C4", self.bind, self.starman, HaproxyPlan(server_close=True))),
            Candidate("D", "nginx -> local HAProxy (C4)", self.nginx_over_haproxy),
            Candidate("E1", "generated nginx, no backup entries",
                      lambda: self._nginx("E1", upstream_replaced(gen, without_backups))),
            Candidate("E2", "generated nginx, no upstream keep-alive",
                      lambda: self._nginx("E2", upstream_replaced(gen, without_keepalive))),
            Candidate("E3", "E2 + Starman --disable-keepalive",
                      lambda: self._nginx("E3", upstream_replaced(
                          gen, lambda b: on_ports(NO_KEEPALIVE_PORT_OFFSET)(without_keepalive(b))))),
            Candidate("F1", "Starlet behind HAProxy (C1)",
                      lambda: self._haproxy("F1", self.bind, starlet, HaproxyPlan())),
            Candidate("F2", "Starlet behind HAProxy (C4)",
                      lambda: self._haproxy("F2", self.bind, starlet, HaproxyPlan(server_close=True))),
            Candidate("F3", "Starlet, 100,000 requests per worker, behind HAProxy (C1)",
                      lambda: self._haproxy("F3", self.bind, long_lived, HaproxyPlan())),
            Candidate("F4", "F3 with maxconn = workers - 1 (a worker kept for checks)",
                      lambda: self._haproxy("F4", self.bind, long_lived, HaproxyPlan(spare=1))),
            Candidate("C5", "HAProxy (C1) with maxconn = workers - 1, Starman",
                      lambda: self._haproxy("C5", self.bind, self.starman, HaproxyPlan(spare=1))),
            Candidate("D5", "nginx -> local HAProxy (C5) over TCP",
                      lambda: self.nginx_over_haproxy("D5", HaproxyPlan(spare=1))),
            Candidate("C6", "C5 + max-reuse 100, pool-max-conn 2 (two LBs' idle connections leave a worker)",
                      lambda: self._haproxy("C6", self.bind, self.starman, C6)),
            Candidate("D6", "nginx -> local HAProxy (C6) over TCP",
                      lambda: self.nginx_over_haproxy("D6", C6)),
            Candidate("D7", "D6 with nginx's access log buffered (64k, flushed every second)",
                      lambda: self.nginx_over_haproxy("D7", C6, buffered_log=True)),
            Candidate("D9", "nginx -> local HAProxy (C5 + max-reuse 100, no pool-max-conn) over TCP",
                      lambda: self.nginx_over_haproxy("D9", C7)),
            Candidate("D8", "D7 over a unix socket",
                      lambda: self.nginx_over_haproxy("D8", C6, buffered_log=True, unix=True)),
            Candidate("G1", "D6 with long-lived Starlet in place of Starman (nginx -> HAProxy -> Starlet)",
                      lambda: self.nginx_over_haproxy("G1", C6, servers=long_lived)),
        ]

    def _starlet_argv(self, starman_argv: list[str], address: str, port: int, per_child: int = 1000) -> list[str]:
        return ["plackup", "-s", "Starlet", "--host", address, "--port", str(port),
                "--max-workers", str(self.workers), "--max-keepalive-reqs", "1000", "--keepalive-timeout", "5",
                "--max-reqs-per-child", str(per_child), "-E", "deployment", starman_argv[-1]]


def _starman_without_keepalive(argv: list[str], address: str, port: int) -> list[str]:
    listen = argv.index("--listen") + 1
    argv = [*argv[:listen], f"{address}:{port}", *argv[listen + 1:]]
    return [*argv[:-1], "--disable-keepalive", argv[-1]]


def stop(study: Study, proc: Started) -> None:
    if isinstance(proc, Pair):
        study.ls.processes.stop(proc.front)
        study.ls.processes.stop(proc.back)
    else:
        study.ls.processes.stop(proc)


def measure(study: Study, candidates: list[Candidate], loads: list[int], rounds: int,
            duration: float) -> dict[int, dict[str, bench.ConfigFigures]]:
    script = study.dir / "report.lua"
    script.write_text(bench.WRK_SCRIPT)
    url = study.endpoint.url + "/"
    results: dict[int, dict[str, bench.ConfigFigures]] = {}
    for load in loads:
        figures = {c.name: bench.ConfigFigures(c.name) for c in candidates}
        for number in range(rounds):
            shift = number % len(candidates)
            for candidate in candidates[shift:] + candidates[:shift]:
                study.r.progress(f"{load} connections, round {number + 1}/{rounds}: {candidate.name}")
                proc = candidate.start()
                try:
                    figures[candidate.name].rounds.append(
                        bench.wrk(url, study.endpoint.host, script, duration, load, 2))
                finally:
                    stop(study, proc)
        results[load] = figures
    return results


@dataclass(frozen=True)
class HangResult:
    name: str
    requests: int
    errors: int
    slowest_s: float
    out_after_s: float | None  # SIGSTOP -> marked DOWN by the active check
    to_victim_after_out: int | None


def hang(study: Study, name: str, start: Callable[[], Started], sock: Path | None,
         seconds: float) -> HangResult:
    """SIGSTOP the first Starman instance 3 s into a wrk run of 15 connections."""
    script = study.dir / "hang.lua"
    script.write_text(HANG_SCRIPT)
    victim = study.r.app_servers[study.r.stack.apps[0].name][0]
    victim_name = f"app1-{study.r.stack.instances[0].port}"
    proc = start()
    down_at: list[float] = []
    sent_at_down: list[int] = []
    done = threading.Event()

    def watch(stopped_at: float) -> None:
        while sock is not None and not done.is_set() and not down_at:
            victim_state = haproxy.servers(sock).get(victim_name)
            if victim_state is not None and victim_state.status.startswith("DOWN"):
                down_at.append(time.monotonic() - stopped_at)
                sent_at_down.append(victim_state.sent)
            time.sleep(0.1)

    try:
        wrk = subprocess.Popen(["wrk", "-t2", "-c15", f"-d{seconds:g}s", "--timeout", "60s", "-H",
                                f"Host: {study.endpoint.host}", "-s", str(script), study.endpoint.url + "/"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        study.ls.processes.signal_group(victim, signal.SIGSTOP)
        watcher = threading.Thread(target=watch, args=(time.monotonic(),))
        watcher.start()
        out, _ = wrk.communicate(timeout=seconds + 90)
        done.set()
        watcher.join()
        sent_total = haproxy.servers(sock)[victim_name].sent if sock else None
    finally:
        study.ls.processes.signal_group(victim, signal.SIGCONT)
        stop(study, proc)
    match = re.search(r"lbstudy requests=(\d+) max_us=(\d+) errors=(\d+) non2xx=(\d+)", out)
    if not match:
        raise SystemExit(f"wrk failed in the hang case: {out[-400:]}")
    requests, max_us, errors, non2xx = map(int, match.groups())
    after = None if sent_total is None or not sent_at_down else sent_total - sent_at_down[0]
    return HangResult(name, requests, errors + non2xx, max_us / 1e6, down_at[0] if down_at else None, after)


# --- report -------------------------------------------------------------------------


def print_tables(results: dict[int, dict[str, bench.ConfigFigures]], what: dict[str, str]) -> None:
    for load, figures in results.items():
        seed = figures["B"].rps
        print(f"\n### {load} wrk connections\n")
        print("| candidate | req/s | p50 ms | p99 ms | errors | vs seed |")
        print("|---|---|---|---|---|---|")
        for name, f in figures.items():
            print(f"| {name} {what[name]} | {f.rps:,.0f} | {f.p50_ms:.1f} | {f.p99_ms:.1f} | {f.errors} "
                  f"| {f.rps / seed:.2f}x |")


def print_hangs(hangs: list[HangResult]) -> None:
    print("\n### One Starman instance SIGSTOPped under 15 connections\n")
    print("| candidate | requests | failed | slowest s | out of rotation after s | sent to it after out |")
    print("|---|---|---|---|---|---|")
    for h in hangs:
        out = "no active check" if h.out_after_s is None else f"{h.out_after_s:.1f}"
        sent = "-" if h.to_victim_after_out is None else str(h.to_victim_after_out)
        print(f"| {h.name} | {h.requests:,} | {h.errors} | {h.slowest_s:.1f} | {out} | {sent} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per candidate, load and round")
    parser.add_argument("--loads", default="15,30,60", help="wrk connections, comma-separated")
    parser.add_argument("--hang", type=float, default=35.0, help="seconds of load in the hang case (0: skip)")
    parser.add_argument("--only", default="", help="candidate names to measure, comma-separated (default: all)")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    loads = [int(n) for n in args.loads.split(",")]
    answers = pipeline.default_answers().replace(lb_tls=False, app_server="starman")  # the candidates as measured
    with Rehearsal(answers, SUBNET) as r:
        r.lay_out()
        r.start()
        for name in list(r.lbs):
            r.loopback.processes.stop(r.lbs.pop(name))
        study = Study(r)
        candidates = [c for c in study.candidates() if not only or c.name in only]
        results = measure(study, candidates, loads, args.rounds, args.duration)
        what = {c.name: c.what for c in candidates}
        hangs = []
        if args.hang:
            for name, plan in (("C1", HaproxyPlan()), ("C4", HaproxyPlan(server_close=True)),
                               ("C5", HaproxyPlan(spare=1))):
                if not only or name in only:
                    hangs.append(hang(study, f"{name} HAProxy", partial(
                        study._haproxy, name, study.bind, study.starman, plan), study.dir / name / "haproxy.sock",
                        args.hang))
            for name, plan in (("D5", HaproxyPlan(spare=1)), ("D6", C6)):
                if not only or name in only:
                    hangs.append(hang(study, f"{name} nginx -> HAProxy", partial(study.nginx_over_haproxy, name, plan),
                                      study.dir / f"{name}-haproxy" / "haproxy.sock", args.hang))
            if not only or "A" in only:
                hangs.append(hang(study, "A generated nginx", lambda: study._nginx("A", study.generated), None,
                                  args.hang))
    print_tables(results, what)
    print_hangs(hangs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
