"""The whole stack on one machine: lay it out, start it in dependency order, smoke-test
it through the load balancers, and stop everything it started (also on Ctrl-C).

Only the rehearsal render's own files are used. What a real node has besides them
is provided the way the node would get it, and nothing else changes:
- the app code: the repo's app/ copied to the app's release directory, as a deploy does;
- /etc/nginx/mime.types: copied from this machine's nginx package;
- Let's Encrypt (lb_tls): pebble, a local ACME server whose DNS sends every name to
  the first load balancer; each load balancer's {project}-tls script gets its certificate;
- nginx's listen lines: bound to the node's loopback address (see nginx.py);
- HAProxy: its chroot and run directories, as Debian's package and systemd make them
  (see haproxy.py);
- PostgreSQL under Patroni: etcd and Patroni as their units run them (see patroni.py);
  the setup script runs on the primary Patroni made, as the first boot runs it;
- PostgreSQL without Patroni: initdb on the primary (the Debian package's job); the
  setup and bootstrap scripts then run as generated;
- systemd units: their ExecStart, WorkingDirectory and environment run directly,
  as the user running the rehearsal (PostgreSQL as the postgres user when that is root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from halgen.compiler.answers import Answers
from halgen.compiler.model import AppInstance, Node, Stack
from halgen.host.acme import AcmeServer, start_pebble
from halgen.host.processes import can_bind, wait_for_port, wait_until
from halgen.rehearse import datatier, haproxy, nginx, patroni
from halgen.rehearse.datatier import start_pg, start_redis
from halgen.rehearse.http import Endpoint, Response, request
from halgen.rehearse.layout import LoopbackStack, RehearsalError, lay_out, make_base
from halgen.rehearse.softdog import Softdog
from halgen.rehearse.units import service_command

DEFAULT_SUBNET = "127.21.0.0/24"  # the tests use 127.20.0.0/24: both can run at once
# What systemd gives a service when its unit sets no PATH.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_PREFIX = "halgen-rehearse-"


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind, and stop everything on the way out."""


Progress = Callable[[str], None]


def stderr_progress() -> Progress:
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Rehearsal:
    answers: Answers
    loopback_subnet: str = DEFAULT_SUBNET
    progress: Progress = field(default_factory=stderr_progress)
    keep: bool = False
    base: Path | None = None
    ls: LoopbackStack | None = None
    pg: dict[str, subprocess.Popen] = field(default_factory=dict)  # PostgreSQL, or Patroni and etcd
    watchdogs: dict[str, Softdog] = field(default_factory=dict)  # DB node -> its softdog stand-in (Patroni)
    redis: dict[str, subprocess.Popen] = field(default_factory=dict)
    app_servers: dict[str, list[subprocess.Popen]] = field(default_factory=dict)
    acme_root_ca: str = ""  # the root the ACME server's certificates chain to (lb_tls)
    lbs: dict[str, subprocess.Popen] = field(default_factory=dict)
    balancers: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)
    _old_handlers: dict[int, Any] = field(default_factory=dict)

    # --- lifetime -------------------------------------------------------------
    def __enter__(self) -> Rehearsal:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[signum] = signal.signal(signum, self._interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    @property
    def loopback(self) -> LoopbackStack:
        if self.ls is None:
            raise RehearsalError("the rehearsal has not been laid out")
        return self.ls

    @property
    def stack(self) -> Stack:
        return self.loopback.stack

    def stop(self) -> None:
        """Stop every program started (clients first), then remove the directory. A second
        Ctrl-C cannot cut this short."""
        with signals_ignored():
            if self.ls is not None and self.ls.procs:
                self.progress("stopping everything that was started")
                self.ls.stop_all()
                patroni.stop_leftovers(self.ls)
            for watchdog in self.watchdogs.values():  # after Patroni closed them
                watchdog.close()
            if self.base is not None:
                if self.keep:
                    self.progress(f"kept {self.base} (--keep): logs in {self.base / 'logs'}")
                else:
                    shutil.rmtree(self.base, ignore_errors=True)
                    self.progress(f"removed {self.base}")
        self.ls, self.base = None, None

    def show_logs(self, lines: int = 12) -> None:
        """The end of the most recently written logs, before the directory goes away."""
        if self.ls is None:
            return
        logs = sorted(self.ls.processes.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]
        for log in logs:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {log.name} (last {len(tail)} lines)", *tail, sep="\n", file=sys.stderr)
        if not self.keep:
            print("(run with --keep to keep every log)", file=sys.stderr)

    # --- layout ---------------------------------------------------------------
    def lay_out(self) -> None:
        # Kept before anything can fail, so stop() always finds the directory.
        self.base = base = make_base(BASE_PREFIX)
        self.progress(f"rendering the answers for loopback {self.loopback_subnet} under {base}")
        self.ls = lay_out(self.answers, base, self.loopback_subnet, LoopbackStack)
        stack = self.ls.stack
        for node in stack.apps:
            shutil.copytree(self.ls.repo / "app", node.paths.app_current, dirs_exist_ok=True)
        for node in stack.lbs:
            nginx.install_package_files(Path(node.paths.root))
        self._refuse_busy_addresses()

    def _refuse_busy_addresses(self) -> None:
        """Another rehearsal (or anything else) on the same addresses would mix with this one."""
        stack = self.stack
        sockets = [(n.address, stack.pg_port) for n in stack.dbs]
        sockets += [(n.address, stack.patroni_port) for n in stack.patroni_dbs]
        sockets += [(n.address, port) for n in stack.etcd_members for port in (stack.etcd_client_port,
                                                                                stack.etcd_peer_port)]
        sockets += [(n.address, stack.redis_port) for n in stack.redis]
        sockets += [(n.address, stack.sentinel_port) for n in stack.sentinels]
        sockets += [(i.address, i.port) for i in stack.instances]
        sockets += [(address, int(port)) for address, port in (stack.balancer_listen(n).rsplit(":", 1)
                                                                for n in stack.lbs)]
        busy = [f"{address}:{port}" for address, port in sockets if not can_bind(address, port)]
        if busy:
            raise RehearsalError(f"already in use: {', '.join(busy)} (another rehearsal? pick another "
                                 "--loopback-subnet)")
        self.ports = nginx.lb_ports([n.address for n in stack.lbs])

    # --- start ------------------------------------------------------------------
    def start(self) -> None:
        """PostgreSQL primary -> replicas -> Redis -> Sentinels -> app servers -> HAProxy -> nginx."""
        if self.stack.patroni:
            self.start_patroni_tier()
        else:
            self.start_manual_pg_tier()
        self.start_redis_and_up()

    def start_patroni_tier(self) -> None:
        ls, stack = self.loopback, self.stack
        members = ", ".join(n.name for n in stack.etcd_members)
        self.progress(f"etcd on {members}; Patroni on {stack.dbs[0].name} creates the cluster, "
                      f"{stack.project}-pg-setup-primary, then Patroni on "
                      f"{', '.join(n.name for n in stack.dbs[1:]) or 'no other node'}")
        self.watchdogs = patroni.watchdogs(ls, self.pg)
        patroni.start_cluster(ls, self.pg)

    def start_manual_pg_tier(self) -> None:
        ls, stack = self.loopback, self.stack
        primary = stack.dbs[0]
        self.progress(f"PostgreSQL primary {primary.name}: initdb, start, run {stack.project}-pg-setup-primary")
        datatier.init_primary(ls)
        self.pg[primary.name] = start_pg(ls, primary.name)
        setup = datatier.node_script(ls, primary.name, "pg-setup-primary")
        if datatier.SETUP_DONE not in setup.stdout or setup.returncode not in (0, datatier.SETUP_BACKUPS_FAILED):
            raise RehearsalError(f"{stack.project}-pg-setup-primary failed: {setup.stderr.strip()[-800:]}")
        if setup.returncode != 0:
            self.progress("  (its pgBackRest stanza step needs Object Storage: backups are not rehearsed)")
        for replica in stack.dbs[1:]:
            self.progress(f"PostgreSQL replica {replica.name}: {stack.project}-pg-bootstrap-replica, start")
            boot = datatier.node_script(ls, replica.name, "pg-bootstrap-replica")
            if boot.returncode != 0:
                raise RehearsalError(f"bootstrap of {replica.name} failed: {boot.stderr.strip()[-800:]}")
            self.pg[replica.name] = start_pg(ls, replica.name)

    def start_redis_and_up(self) -> None:
        ls, stack = self.loopback, self.stack
        for node in stack.redis:
            self.progress(f"{node.role_title} {node.name}")
            self.redis[node.name] = start_redis(ls, node)
        if stack.sentinels:
            self.progress(f"Sentinels on {', '.join(n.name for n in stack.sentinels)}; waiting for the topology")
            for node in stack.sentinels:
                self.redis[f"sentinel-{node.name}"] = ls.spawn(
                    ["redis-sentinel", f"{node.paths.redis_conf_dir}/sentinel.conf"], f"sentinel-{node.name}",
                    cwd=node.paths.root)
            datatier.wait_for_sentinels(ls)
        for node in stack.apps:
            listens = ", ".join(i.listen for i in node.instances)
            self.progress(f"{self.stack.app_server_title} on {node.name}: {listens}")
            self.start_app_servers(node)
        for node in stack.tls_lbs:
            _checked_script(self.loopback, node, "tls", "placeholder")
        for node in stack.lbs:
            self.progress(f"HAProxy on {node.name}: {stack.balancer_listen(node)}")
            self.start_balancer(node)
            self.progress(f"nginx on {node.name}: {self.endpoint(node).url}")
            self.start_nginx(node)
        if stack.tls_lbs:
            self.get_certificates()

    def get_certificates(self) -> None:
        """What each load balancer's first boot does after nginx is up: its {project}-tls
        script asks the ACME server (here pebble, on Let's Encrypt's behalf) for the
        certificate, proves the names with HTTP-01 and switches nginx to it."""
        ls, stack = self.loopback, self.stack
        first = stack.lbs[0]
        acme = start_pebble(ls.processes, ls.base / "acme", stack.target.acme_address, self.ports[nginx.HTTP],
                            resolve_to=first.address)
        self.progress(f"ACME server (pebble) at {acme.directory}; every name resolves to {first.name}")
        for node in stack.tls_lbs:
            self.progress(f"certificate for {node.name}: {stack.project}-tls issue")
            _checked_script(ls, node, "tls", "issue", env=_script_env(acme))
        root = ls.base / "acme" / "issuing-root.pem"
        root.write_text(acme.issuing_root())
        self.acme_root_ca = str(root)
        # nginx reloads asynchronously: old workers may take a connection and show the
        # throwaway certificate until they exit, so wait until several in a row verify.
        for endpoint in self.endpoints:
            wait_until(partial(_verified, endpoint, stack.a.lb_health_path), 30,
                       f"{endpoint.address} to serve the issued certificate")

    def start_app_servers(self, node: Node) -> None:
        self.app_servers[node.name] = [self._spawn_instance(node, instance, f"app-{node.name}-{instance.port}")
                                       for instance in node.instances]
        for instance in node.instances:
            wait_for_port(instance.address, instance.port, 30)

    def start_beside(self, offset: int, argv: Callable[[list[str], str, int], list[str]],
                     label: str) -> tuple[list[str], list[subprocess.Popen]]:
        """A second set of app servers, one beside each instance on its port + offset:
        the command argv(unit's argv, address, port) with the unit's environment and
        directory (the same app). Their listen addresses and processes."""
        listens, procs = [], []
        for node in self.stack.apps:
            for instance in node.instances:
                port = instance.port + offset
                procs.append(self._spawn_instance(node, instance, f"{label}-{node.name}-{port}",
                                                  _listening_at(argv, instance.address, port)))
                listens.append(f"{instance.address}:{port}")
        for listen in listens:
            address, port_text = listen.rsplit(":", 1)
            wait_for_port(address, int(port_text), 60)
        return listens, procs

    def _spawn_instance(self, node: Node, instance: AppInstance, name: str,
                        argv: Callable[[list[str]], list[str]] | None = None) -> subprocess.Popen:
        command = service_command(Path(node.paths.root) / "etc/systemd/system" / f"{instance.unit}.service")
        return self.loopback.spawn(argv(command.argv) if argv else command.argv, name,
                                   env={"PATH": SYSTEMD_PATH, **command.environment()}, cwd=command.cwd)

    def start_balancer(self, node: Node) -> None:
        conf = haproxy.runtime_config(node, self.loopback.base / "run" / f"haproxy-{node.name}.cfg")
        problem = haproxy.check_config(conf)
        if problem:
            raise RehearsalError(f"HAProxy on {node.name} refuses its config: {problem}")
        self.balancers[node.name] = self.loopback.spawn(haproxy.foreground(conf), f"haproxy-{node.name}",
                                                      cwd=node.paths.root)
        address, port = self.stack.balancer_listen(node).rsplit(":", 1)
        wait_for_port(address, int(port), 15)
        # Until the first checks pass, HAProxy has no server to send a request to.
        sock = haproxy.stats_socket(node)
        wait_until(lambda: haproxy.all_up(sock) or None, 30,
                   f"HAProxy on {node.name} to see every app server instance up")

    def start_nginx(self, node: Node) -> None:
        conf = self.nginx_conf(node)
        error_log = Path(node.paths.nginx_log_dir) / "error.log"
        problem = nginx.check_config(conf, error_log)
        if problem:
            raise RehearsalError(f"nginx on {node.name} refuses its config: {problem}")
        self.lbs[node.name] = self.loopback.spawn(nginx.foreground(conf, error_log), f"nginx-{node.name}",
                                                cwd=node.paths.root)
        endpoint = self.endpoint(node)
        wait_for_port(endpoint.address, endpoint.port, 15)

    def nginx_conf(self, node: Node) -> Path:
        """The node's nginx.conf with its listen lines bound to its loopback address."""
        source = Path(node.paths.nginx_conf_dir) / "nginx.conf"
        runtime = self.loopback.base / "run" / f"nginx-{node.name}.conf"
        runtime.parent.mkdir(exist_ok=True)
        runtime.write_text(nginx.bind_listens(source.read_text(), node.address, self.ports))
        return runtime

    # --- what drills use ---------------------------------------------------------
    def balancer_states(self) -> dict[str, dict[str, haproxy.ServerState]]:
        """Each load balancer's HAProxy's view of the app server instances, by server name."""
        return {node.name: haproxy.servers(haproxy.stats_socket(node)) for node in self.stack.lbs
                if node.name in self.balancers}

    def endpoint(self, node: Node) -> Endpoint:
        tls = bool(self.stack.a.lb_tls)
        return Endpoint(node.address, self.ports[nginx.HTTPS if tls else nginx.HTTP], tls,
                        self.stack.canonical_domain, self.acme_root_ca)

    @property
    def endpoints(self) -> list[Endpoint]:
        return [self.endpoint(n) for n in self.stack.lbs]

    # --- smoke test ----------------------------------------------------------------
    def smoke(self) -> list[Check]:
        """Every load balancer answers, and the app reaches PostgreSQL (write and read) and
        Redis (a session) through it."""
        checks: list[Check] = []
        for lb, endpoint in zip(self.stack.lbs, self.endpoints, strict=True):
            checks += smoke_one(lb.name, endpoint, self.stack.a.lb_health_path)
        return checks


def smoke_one(name: str, endpoint: Endpoint, health_path: str) -> list[Check]:
    checks = []

    def check(what: str, ok: bool, detail: str) -> None:
        checks.append(Check(f"{name}: {what}", ok, detail))

    health = request(endpoint, "GET", health_path)
    check(f"GET {health_path}", health.status == 200, f"{health.status} {health.body}")
    hello = request(endpoint, "GET", "/")
    check("GET /", hello.status == 200 and hello.body.startswith("Hello from"), f"{hello.status} {hello.body}")
    try:
        ready = wait_until(lambda: _healthy(endpoint), 30, "the app's /healthz")
        check("GET /healthz", ready.body == "postgresql=ok redis=ok", ready.body)
    except TimeoutError as err:
        check("GET /healthz", False, str(err))
    created = request(endpoint, "POST", "/items", body=b"rehearsal")
    check("POST /items", created.status == 201, f"{created.status} {created.body}")
    if created.status == 201:
        try:
            wait_until(lambda: request(endpoint, "GET", f"/items/{created.body}").body == "rehearsal", 10,
                       "the item on the read path")
            check(f"GET /items/{created.body}", True, "rehearsal")
        except TimeoutError as err:
            check(f"GET /items/{created.body}", False, str(err))
    first = request(endpoint, "GET", "/session")
    second = request(endpoint, "GET", "/session", cookie=first.cookie)
    check("GET /session twice", (first.body, second.body) == ("visits=1", "visits=2"),
          f"{first.body}, {second.body}")
    try:
        stranger = request(endpoint, "GET", "/", host="unknown.invalid")
        check("unknown Host closed (444)", False, f"answered {stranger.status}")
    except OSError as err:  # http.client's RemoteDisconnected is a ConnectionResetError
        check("unknown Host closed (444)", True, type(err).__name__)
    return checks


def _healthy(endpoint: Endpoint) -> Response | None:
    response = request(endpoint, "GET", "/healthz")
    return response if response.status == 200 else None


def _verified(endpoint: Endpoint, path: str, times: int = 5) -> bool:
    return all(request(endpoint, "GET", path).status == 200 for _ in range(times))


def _script_env(acme: AcmeServer) -> dict[str, str]:
    return {"PATH": SYSTEMD_PATH, "HOME": os.environ.get("HOME", "/root"), **acme.client_env()}


def _checked_script(ls: LoopbackStack, node: Node, name: str, *args: str, env: dict[str, str] | None = None) -> None:
    datatier.checked(datatier.node_script(ls, node.name, name, *args, env=env),
                     f"{ls.stack.project}-{name} {' '.join(args)} on {node.name}")


@contextmanager
def signals_ignored() -> Iterator[None]:
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def stray_processes(base: Path) -> list[str]:
    """Processes whose command line or working directory is under ``base``."""
    strays = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(base) in cmdline or cwd.startswith(str(base)):
            strays.append(f"{proc.name}: {cmdline.strip()}")
    return strays


def _listening_at(argv: Callable[[list[str], str, int], list[str]], address: str,
                  port: int) -> Callable[[list[str]], list[str]]:
    return lambda unit_argv: argv(unit_argv, address, port)
