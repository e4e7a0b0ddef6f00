"""Benchmark: the generated load balancer (nginx at the edge, HAProxy balancing) against the
seed document's nginx config, verbatim, in one run.

The generated config proxies to the rehearsal's app servers, the seed's to Starman
(the seed's app server): the same instances when the stack runs Starman; otherwise a
second set started as the seed's unit starts Starman (``starman --workers N --listen
ADDRESS:PORT app.psgi``) beside each instance, on its port + SEED_STARMAN_PORT_OFFSET,
with the stack's worker count, app, environment and ``-E deployment`` (the seed's unit
leaves PLACK_ENV unset, which would load Plack's development middleware and flatter the
generated side). One config at a time on the same address and port, loaded by the same
wrk command; rounds alternate which config goes first. Figures: requests per second,
p50 and p99 latency.

The seed's config (seed-nginx.conf: lines 8-44 of the seed document, byte for byte)
is a fragment for nginx's http context, so it is included from a minimal main file
(pid, error and access logs under the bench directory; worker_processes and
worker_connections copied from the generated config, so that only the proxying
differs). Exactly two substitutions are made in the fragment, both needed to run
on loopback:
- its three ``server 10.10.0.N:5000 ...;`` upstream lines become one line per Starman
  instance, each with the seed's own parameters
  (``weight=10 max_fails=3 fail_timeout=30s``);
- ``listen 80;`` becomes ``listen ADDRESS:PORT;`` (the bench address).
The generated config runs with its listen lines bound the same way (nginx.bind_listens),
with the load balancer's own HAProxy started and stopped with it.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from halgen.host.processes import wait_for_port
from halgen.rehearse import nginx
from halgen.rehearse.layout import RehearsalError
from halgen.rehearse.stack import Rehearsal

SEED_CONF = Path(__file__).with_name("seed-nginx.conf")
# The seed's Starman beside an instance of another app server listens on its port + this.
SEED_STARMAN_PORT_OFFSET = 100
SEED_SERVER = re.compile(r"^server 10\.10\.0\.\d+:5000 (weight=10 max_fails=3 fail_timeout=30s;)$", re.M)
RPS_RATIO_TARGET = 2.5
# Loads, as multiples of the stack's app server workers: every worker busy, then 2x and 4x
# as many connections as workers (the overflow must queue somewhere without hurting p99).
LOAD_MULTIPLES = (1, 2, 4)
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("halgen-bench requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
_WRK_LINE = re.compile(r"halgen-bench requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) "
                       r"errors=(\d+) non2xx=(\d+)")


@dataclass(frozen=True)
class Round:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass
class ConfigFigures:
    name: str
    rounds: list[Round] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return sum(r.requests for r in self.rounds) / sum(r.seconds for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)


@dataclass(frozen=True)
class TransitCost:
    """What TLS inside the VPC costs on the app's data path: the same stack with
    vpc_tls on (this rehearsal) and off (a twin on the next loopback subnet), loaded
    alternately through their first load balancer on a path that reads PostgreSQL and Redis."""

    tls: ConfigFigures
    plain: ConfigFigures
    path: str

    @property
    def rps_cost(self) -> float:
        """The share of requests per second TLS costs (negative: within noise, TLS was faster)."""
        return 1 - self.tls.rps / self.plain.rps


@dataclass(frozen=True)
class LoadRow:
    """Both configs at one load (wrk connections)."""

    connections: int
    generated: ConfigFigures
    seed: ConfigFigures

    @property
    def rps_ratio(self) -> float:
        return self.generated.rps / self.seed.rps

    @property
    def passed(self) -> bool:
        return (self.rps_ratio >= RPS_RATIO_TARGET and self.generated.p99_ms <= self.seed.p99_ms
                and self.generated.errors == 0)


@dataclass(frozen=True)
class BenchResult:
    rows: tuple[LoadRow, ...]
    duration_s: float
    path: str
    transit: TransitCost | None = None

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def target(self) -> str:
        return (f"at every load: generated >= {RPS_RATIO_TARGET:g}x the seed's requests per second, "
                "p99 no worse, no errors")


def seed_fragment(seed: str, upstreams: list[str], listen: str) -> str:
    """The seed config with its upstream servers and listen address swapped for the rehearsal's."""
    servers = list(SEED_SERVER.finditer(seed))
    if len(servers) != 3 or seed.count("listen 80;") != 1:
        raise ValueError(f"{SEED_CONF.name}: expected the seed's three upstream servers and one 'listen 80;'")
    lines = "\n".join(f"server {upstream} {servers[0][1]}" for upstream in upstreams)
    seed = seed[:servers[0].start()] + lines + seed[servers[-1].end():]
    return seed.replace("listen 80;", f"listen {listen};")


def seed_main(directory: Path, worker_processes: str, worker_connections: str) -> str:
    """The main file around the seed's http-context fragment: only paths and sizes."""
    return f"""# halgen rehearse --bench: the seed document's config ({SEED_CONF.name}, substituted as
# described in halgen/rehearse/bench.py), in a main file of its own.
pid {directory}/nginx.pid;
error_log {directory}/error.log;
worker_processes {worker_processes};
events {{
    worker_connections {worker_connections};
}}
http {{
    access_log {directory}/access.log;
    include {directory}/seed.conf;
}}
"""


def _main_context(generated: str) -> tuple[str, str]:
    workers = re.search(r"^\s*worker_processes (\S+);", generated, re.M)
    connections = re.search(r"^\s*worker_connections (\S+);", generated, re.M)
    return (workers[1] if workers else "auto"), (connections[1] if connections else "1024")


def write_seed_config(r: Rehearsal, directory: Path, listen: str, upstreams: list[str]) -> Path:
    lb = r.stack.lbs[0]
    generated = (Path(lb.paths.nginx_conf_dir) / "nginx.conf").read_text()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "seed.conf").write_text(seed_fragment(SEED_CONF.read_text(), upstreams, listen))
    main = directory / "nginx.conf"
    main.write_text(seed_main(directory, *_main_context(generated)))
    return main


def start_seed_starman(r: Rehearsal) -> tuple[list[str], list[subprocess.Popen]]:
    """The Starman instances the seed's config proxies to (listen addresses), and the
    processes started for them (none when the stack itself runs Starman)."""
    if r.stack.a.app_server == "starman":
        return [instance.listen for instance in r.stack.instances], []
    workers = str(r.stack.a.app_workers)
    return r.start_beside(SEED_STARMAN_PORT_OFFSET, lambda argv, address, port: [
        "starman", "--workers", workers, "--listen", f"{address}:{port}", "-E", "deployment", argv[-1]], "seed-starman")


def wrk(url: str, host: str, script: Path, duration_s: float, connections: int, threads: int) -> Round:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "10s",
                          "-H", f"Host: {host}", "-s", str(script), url],
                         capture_output=True, text=True, timeout=duration_s + 60)
    match = _WRK_LINE.search(out.stdout)
    if out.returncode != 0 or not match:
        raise RehearsalError(f"wrk failed: {(out.stderr or out.stdout).strip()[-400:]}")
    requests, duration_us, p50_us, p99_us, errors, non2xx = map(int, match.groups())
    return Round(requests, duration_us / 1e6, p50_us / 1e3, p99_us / 1e3, errors + non2xx)


def run(r: Rehearsal, rounds: int = 3, duration_s: float = 5.0, connections: int | None = None, threads: int = 2,
        path: str = "/") -> BenchResult:
    """Alternate the two configs on the first load balancer's address and port, with the
    rehearsal's own load balancers stopped meanwhile (idle upstream keep-alive
    connections of theirs would hold app server workers).

    Each load is a row: by default 1x, 2x and 4x the stack's app server workers as wrk
    connections; ``connections`` measures that one load only."""
    workers = r.stack.total_app_workers
    loads = [connections] if connections else [workers * multiple for multiple in LOAD_MULTIPLES]
    if r.stack.a.lb_tls:
        raise RehearsalError("the benchmark compares plain HTTP like the seed's: render with lb_tls: false")
    if shutil.which("wrk") is None:
        raise RehearsalError("the benchmark needs wrk (apt-get install wrk)")
    ls, lb = r.loopback, r.stack.lbs[0]
    directory = ls.base / "bench"
    endpoint = r.endpoint(lb)
    seed_upstreams, seed_app_servers = start_seed_starman(r)
    seed_conf = write_seed_config(r, directory / "seed", f"{endpoint.address}:{endpoint.port}", seed_upstreams)
    script = directory / "report.lua"
    script.write_text(WRK_SCRIPT)
    for running in (r.lbs, r.balancers):
        for name in list(running):
            ls.processes.stop(running.pop(name))
    rows = []
    for load in loads:
        figures = {"generated": ConfigFigures("generated"), "seed": ConfigFigures("seed")}
        for number in range(rounds):
            order = ["generated", "seed"] if number % 2 == 0 else ["seed", "generated"]
            for name in order:
                r.progress(f"bench {load} connections, round {number + 1}/{rounds}: {name} config, {duration_s:g} s")
                if name == "generated":  # nginx and the HAProxy it hands the app's requests to
                    r.start_balancer(lb)
                    r.start_nginx(lb)
                    procs = [r.lbs.pop(lb.name), r.balancers.pop(lb.name)]
                else:
                    procs = [ls.spawn(nginx.foreground(seed_conf, directory / "seed" / "error.log"), "nginx-seed",
                                      cwd=directory)]
                    wait_for_port(endpoint.address, endpoint.port, 15)
                try:
                    figures[name].rounds.append(wrk(endpoint.url + path, endpoint.host, script, duration_s,
                                                    load, threads))
                finally:
                    for proc in procs:
                        ls.processes.stop(proc)
        rows.append(LoadRow(load, figures["generated"], figures["seed"]))
    for proc in seed_app_servers:
        ls.processes.stop(proc)
    for node in r.stack.lbs:
        r.start_balancer(node)
        r.start_nginx(node)
    transit = transit_cost(r, rounds, duration_s, workers, threads, script) if r.stack.a.vpc_tls else None
    return BenchResult(tuple(rows), duration_s, path, transit)


def transit_cost(r: Rehearsal, rounds: int, duration_s: float, connections: int, threads: int,
                 script: Path, path: str = "/healthz") -> TransitCost:
    """Start a twin of the stack with vpc_tls off on the next loopback subnet, then load
    both on ``path`` (a PostgreSQL query and a Redis command per request), alternating."""
    subnet = ipaddress.IPv4Network(r.loopback_subnet)
    twin_subnet = str(ipaddress.IPv4Network((int(subnet.network_address) + subnet.num_addresses, subnet.prefixlen)))
    r.progress(f"TLS inside the VPC: a twin without it on {twin_subnet}")
    with Rehearsal(r.answers.replace(vpc_tls=False), twin_subnet, progress=r.progress) as twin:
        twin.lay_out()
        twin.start()
        figures = {"tls": ConfigFigures("vpc_tls on"), "plain": ConfigFigures("vpc_tls off")}
        endpoints = {"tls": r.endpoint(r.stack.lbs[0]), "plain": twin.endpoint(twin.stack.lbs[0])}
        for number in range(rounds):
            for name in (["tls", "plain"] if number % 2 == 0 else ["plain", "tls"]):
                r.progress(f"transit round {number + 1}/{rounds}: {figures[name].name}, {duration_s:g} s")
                endpoint = endpoints[name]
                figures[name].rounds.append(wrk(endpoint.url + path, endpoint.host, script, duration_s,
                                                connections, threads))
    return TransitCost(figures["tls"], figures["plain"], path)
