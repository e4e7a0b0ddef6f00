"""The stack booted node by node from its own user-data: every node of a built repo is a
Debian 12 container (systemd-nspawn), or a QEMU virtual machine, on a private bridge
with the stack's VPC addresses, seeded with ``build/user-data/<node>.yaml`` byte for
byte as NoCloud user-data.

What differs from Linode, and only here: each node's network-config (Linode assigns the
VPC address itself), and the machine's apt sources, /etc/hosts and trusted CAs, which
point at the helpers on the bridge (a package mirror of what the user-data installs,
and stand-ins for Object Storage and, with TLS, for the ACME server) instead of the
internet. None of it is in the user-data.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from halgen.compiler import cloudinit, firewall, secrets
from halgen.compiler.model import Node, Stack
from halgen.formats import ufw
from halgen.host import acme, aptmirror, debimage, nspawn, objectstore, qemu
from halgen.host.netns import PrivateNetwork
from halgen.host.overlay import Overlay
from halgen.host.processes import HostError, Processes, wait_for_port_from
from halgen.rehearse.stack import Check, Interrupted, signals_ignored

MIRROR_PORT = 80
CLOUD_INIT_STATUS = ["cloud-init", "status"]
CLOUD_INIT_RESULT = ["cat", "/run/cloud-init/result.json"]
FIRST_BOOT_TAIL = ["sh", "-c", "grep 'first-boot:' /var/log/cloud-init-output.log | tail -n 5"]
SYSTEM_STATE = ["systemctl", "is-system-running"]
FAILED_UNITS = ["systemctl", "list-units", "--failed", "--plain", "--no-legend"]
UFW_ADDED, UFW_STATUS = ["ufw", "show", "added"], ["ufw", "status"]


class Machine(Protocol):
    """A booted node: a container, or a virtual machine answering from its report."""

    def run(self, argv: list[str], timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]: ...

    def running(self) -> bool: ...

    def pull_plug(self) -> None: ...


# cloud-init status values that mean first boot is over
FINISHED = ("done", "error", "disabled")


def log(message: str) -> None:
    print(f"rehearse: {message}", file=sys.stderr, flush=True)


@dataclass
class NodeReport:
    name: str
    role: str
    address: str
    seconds_to_done: float | None = None  # from container start to cloud-init's final stage
    cloud_init: str = "not started"
    errors: list[str] = field(default_factory=list)  # cloud-init's, and the first-boot log's last lines
    system: str = ""  # systemctl is-system-running
    failed_units: list[str] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)  # unit -> "enabled/active"
    firewall_diff: list[str] = field(default_factory=list)  # '+ rule' present not planned, '- rule' missing

    @property
    def ok(self) -> bool:
        return (self.cloud_init == "done" and not self.errors and self.system == "running"
                and not self.failed_units and not self.firewall_diff
                and all(state == "enabled/active" for state in self.services.values()))


def settle(machine: Machine, timeout: float) -> str:
    """Wait until the machine's boot has finished (no job left): systemd's verdict
    ('running', 'degraded', ...)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = machine.run(SYSTEM_STATE, timeout=30).stdout.strip()
        if state not in ("initializing", "starting", ""):
            return state
        time.sleep(1)
    return state or "unknown"


def user_data_path(repo: Path, node: Node) -> Path:
    return repo / "build" / "user-data" / f"{node.name}.yaml"


def unbuilt(repo: Path, stack: Stack) -> list[str]:
    """The nodes whose user-data 'halgen build' has not written."""
    return [node.name for node in stack.nodes if not user_data_path(repo, node).is_file()]


def role_units(stack: Stack, node: Node) -> tuple[str, ...]:
    """The systemd units that must be enabled and active for the node to serve its role."""
    project = stack.a.project
    if node.role == "lb":
        units: tuple[str, ...] = ("nginx", "haproxy")
    elif node.role == "app":
        units = tuple(i.unit for i in node.instances)
    elif node.role == "db":
        units = ("patroni",) if node.patroni else (f"postgresql@{stack.a.pg_version}-main",)
    elif node.role == "redis":
        units = (f"{project}-redis",)
    else:
        units = ()  # the monitoring node: its units are its exporters'
    jobs = tuple(f"{project}-{job.name}.timer" for job in stack.jobs(node))
    return (units + ((f"{project}-sentinel",) if node.sentinel else ()) + (("etcd",) if node.etcd else ())
            + node.exporters + jobs + ("ssh", "fail2ban"))


_NETWORKS = itertools.count(1)  # one private network per booted stack, several may run at once


class BootedStack:
    """Boots every node of ``repo`` (built with ``halgen build``) and stops them on close."""

    def __init__(self, repo: Path, stack: Stack, work: Path, keep: bool = False, acme: bool = True,
                 machines: str = "containers", extra_packages: tuple[str, ...] = ()) -> None:
        """``acme``: with lb_tls, an ACME server stands in for the answers' (else the load
        balancers' first boot finds none, as on a node whose DNS is not yet pointed).
        ``machines``: 'containers' (systemd-nspawn) or 'vm' (QEMU, a kernel of its own).
        ``extra_packages``: also in the mirror (what an app's cpanfile brings from Debian)."""
        self.repo, self.stack, self.work, self.keep, self.acme = repo, stack, work, keep, acme
        self.machines, self.extra_packages = machines, extra_packages
        subnet = ipaddress.IPv4Network(stack.a.vpc_subnet)
        self.network = PrivateNetwork(f"halgen-{stack.a.project}-{os.getpid()}-{next(_NETWORKS)}",
                                      ipaddress.IPv4Interface(f"{subnet[1]}/{subnet.prefixlen}"))
        self.processes = Processes(work / "logs")
        self.overlays: dict[str, Overlay] = {}
        self.containers: dict[str, Machine] = {}
        self.reports: dict[str, NodeReport] = {}
        self.started: dict[str, float] = {}
        self.facts: dict[str, object] = {}
        self._old_handlers: dict[int, Any] = {}
        self.client_ca = ""  # what a client trusts for the load balancers' HTTPS (TLS stacks)
        # made by prepare()
        self.image: debimage.Image | None = None
        self.storage: objectstore.ObjectStorage | None = None
        self.apt_source = ""
        self.hosts: dict[str, str] = {}  # /etc/hosts of every node: the stand-ins under real names
        self.trusted: list[str] = []  # PEM certificates every node trusts

    # -- setting up ---------------------------------------------------------------------------
    def user_data(self, node: Node) -> bytes:
        return user_data_path(self.repo, node).read_bytes()

    def packages(self) -> list[str]:
        return sorted({p for node in self.stack.nodes for p in cloudinit.packages(self.stack, node)}
                      | set(self.extra_packages))

    def prepare(self) -> None:
        """The image, the package mirror, the private network and its helpers."""
        began = time.monotonic()
        self.image = image = debimage.ensure_image(log, kernel=self.machines == "vm")
        self.facts["image"] = image.facts()
        mirror = aptmirror.ensure_mirror(image, self.packages(), self.work, log)
        self.facts["mirror"] = mirror.fetched
        self.network.create()
        gateway = str(self.network.gateway.ip)
        self.processes.spawn([*self.network.enter(), sys.executable, "-m", "http.server", "--bind", gateway,
                              "--directory", str(mirror.path), str(MIRROR_PORT)], "mirror")
        wait_for_port_from(self.network.enter(), gateway, MIRROR_PORT)
        self.storage = objectstore.start(self.processes, self.work / "object-storage", gateway,
                                         self.stack.a.backup_endpoint, self.stack.object_storage_region,
                                         self.stack.backup_bucket, tuple(self.network.enter()))
        self.apt_source = mirror.source_line(f"http://{gateway}:{MIRROR_PORT}")
        self.hosts[self.storage.endpoint] = gateway
        self.trusted.append(self.storage.cert.read_text())
        if self.stack.a.lb_tls and self.acme:
            self._start_acme()
        self.facts["prepare_seconds"] = round(time.monotonic() - began, 1)

    def _start_acme(self) -> None:
        """pebble answering at the answers' ACME directory URL (Let's Encrypt's by default)
        on the bridge's second address, validating every name at the first load balancer."""
        address = str(self.network.gateway.ip + 1)
        self.network.add_address(address)
        work = self.work / "acme"
        pebble, front_cert = acme.start_as(self.processes, work, self.stack.acme_directory, address,
                                           self.stack.lbs[0].address, tuple(self.network.enter()))
        self.hosts[urllib.parse.urlsplit(self.stack.acme_directory).hostname or ""] = address
        self.trusted.append(front_cert.read_text())
        root = subprocess.run([*self.network.enter(), "curl", "-sf", "--cacert", str(pebble.tls_cert),
                               f"https://{address}:{acme.MANAGEMENT_PORT}/roots/0"], capture_output=True, text=True)
        if root.returncode != 0:
            raise HostError(f"pebble gave no issuing root: {root.stderr.strip()}")
        (work / "issuing-root.pem").write_text(root.stdout)
        self.client_ca = str(work / "issuing-root.pem")

    def boot(self, names: list[str] | None = None) -> None:
        """Boot these nodes (default: every one), each from a fresh copy of the image."""
        if self.image is None:
            raise HostError("boot() before prepare()")
        chosen = [n for n in self.stack.nodes if names is None or n.name in names]
        log(f"booting {', '.join(n.name for n in chosen)} on {self.network.name} ({self.stack.a.vpc_subnet})")
        for node in chosen:
            self.reports[node.name] = NodeReport(node.name, node.role, node.address)
            overlay = Overlay(self.image.root, self.work / "nodes" / node.name, keep=self.keep)
            name = f"{self.stack.a.project}-{node.name}"
            if self.machines == "vm":
                self.containers[node.name] = self._boot_vm(node, overlay, name)
                continue
            self._seed(overlay.mount(), node, nspawn.INTERFACE)
            self.overlays[node.name] = overlay
            self.started[node.name] = time.monotonic()
            self.containers[node.name] = nspawn.boot(name, overlay.root, self.network, self.processes)

    def _boot_vm(self, node: Node, overlay: Overlay, name: str) -> Machine:
        """The node's tree as a disk of its own (the image, its seed, the rehearsal's
        report unit), booted in QEMU with the image's kernel."""
        root = overlay.mount()
        try:
            self._seed(root, node, qemu.INTERFACE)
            qemu.install_report(root, self.check_commands(node))
            disk = self.work / "nodes" / f"{node.name}.img"
            qemu.make_disk(root, disk)
        finally:
            overlay.unmount()
        index = self.stack.nodes.index(node)
        self.started[node.name] = time.monotonic()
        return qemu.boot(name, self.image.root if self.image else root, disk, self.network, self.processes,
                         tap=f"tap{index}", mac=f"52:54:00:4c:00:{index:02x}")

    def _seed(self, root: Path, node: Node, interface: str) -> None:
        seed = root / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True)
        (seed / "user-data").write_bytes(self.user_data(node))
        (seed / "meta-data").write_text(f"instance-id: {node.hostname}\nlocal-hostname: {node.hostname}\n")
        prefix = ipaddress.IPv4Network(self.stack.a.vpc_subnet).prefixlen
        (seed / "network-config").write_text(
            "version: 2\nethernets:\n"
            f"  {interface}:\n    addresses: [{node.address}/{prefix}]\n"
            f"    nameservers: {{addresses: [{self.network.gateway.ip}]}}\n")
        (root / "etc/apt/sources.list").write_text(self.apt_source)
        (root / "etc/resolv.conf").write_text(f"nameserver {self.network.gateway.ip}\n")
        # Object Storage and ACME are the stand-ins on the bridge, under the real names,
        # with certificates the node trusts.
        (root / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
                                        + "".join(f"{address} {name}\n" for name, address in self.hosts.items()))
        for number, pem in enumerate(self.trusted):
            (root / f"usr/local/share/ca-certificates/rehearsal-{number}.crt").write_text(pem)
        with open(root / "etc/ssl/certs/ca-certificates.crt", "a") as bundle:
            bundle.write("".join(self.trusted))

    # -- first boot ----------------------------------------------------------------------------
    def wait_first_boot(self, names: list[str] | None = None, timeout: float = 900) -> None:
        """Until these nodes' (default: every booted one's) cloud-init has finished, or
        ``timeout``, noting each one's time."""
        pending = set(names or self.containers)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                status = self._cloud_init_status(name)
                self.reports[name].cloud_init = status
                if status in FINISHED:
                    self.reports[name].seconds_to_done = round(time.monotonic() - self.started[name], 1)
                    log(f"{name}: cloud-init {status} after {self.reports[name].seconds_to_done} s")
                    pending.discard(name)
            time.sleep(1)
        for name in pending:
            self.reports[name].errors.append(f"cloud-init still '{self.reports[name].cloud_init}' after {timeout} s")

    def first_boot(self, name: str, timeout: float = 600) -> NodeReport:
        """Boot one node, wait for its first boot to end, and give its verdict."""
        self.boot([name])
        self.wait_first_boot([name], timeout=timeout)
        return self.check([name])[name]

    def _cloud_init_status(self, name: str) -> str:
        container = self.containers[name]
        if not container.running():
            return "powered off"
        out = container.run(CLOUD_INIT_STATUS, timeout=30).stdout
        for line in out.splitlines():
            if line.startswith("status:"):
                return line.split(":", 1)[1].strip()
        return "not started"

    # -- checks --------------------------------------------------------------------------------
    def check(self, names: list[str] | None = None) -> dict[str, NodeReport]:
        """These booted nodes' (default: every one's) verdict: cloud-init, systemd, the
        role's units, the firewall. Each node is checked once: its report is final."""
        for node in self.stack.nodes:
            if node.name not in self.containers or (names is not None and node.name not in names):
                continue
            report, container = self.reports[node.name], self.containers[node.name]
            if not container.running():
                report.errors.append("the container stopped")
                continue
            report.errors.extend(self._cloud_init_errors(container))
            report.system = settle(container, 120)
            failed = container.run(FAILED_UNITS).stdout
            report.failed_units = [line.split()[0] for line in failed.splitlines() if line.strip()]
            for unit in role_units(self.stack, node):
                enabled = container.run(["systemctl", "is-enabled", unit]).stdout.strip()
                active = container.run(["systemctl", "is-active", unit]).stdout.strip()
                report.services[unit] = f"{enabled}/{active}"
            report.firewall_diff = self._firewall_diff(node, container)
        return self.reports

    def check_commands(self, node: Node) -> list[list[str]]:
        """Every command check() runs on ``node`` (a virtual machine records them)."""
        units = role_units(self.stack, node)
        return [CLOUD_INIT_STATUS, CLOUD_INIT_RESULT, FIRST_BOOT_TAIL, SYSTEM_STATE, FAILED_UNITS,
                *(argv for u in units for argv in (["systemctl", "is-enabled", u], ["systemctl", "is-active", u])),
                UFW_ADDED, UFW_STATUS]

    def _cloud_init_errors(self, container: Machine) -> list[str]:
        result = container.run(CLOUD_INIT_RESULT)
        if result.returncode != 0:
            return ["cloud-init wrote no result"]
        errors = [str(e) for e in json.loads(result.stdout).get("v1", {}).get("errors", [])]
        if errors:  # the first-boot script's own account of what failed
            tail = container.run(FIRST_BOOT_TAIL)
            errors.extend(tail.stdout.splitlines())
        return errors

    def _firewall_diff(self, node: Node, container: Machine) -> list[str]:
        shown = container.run(UFW_ADDED).stdout
        status = container.run(UFW_STATUS).stdout
        problems = [] if status.startswith("Status: active") else ["ufw is not active"]
        live = {_pair(r.source, r.ports) for r in ufw.firewall(shown).rules}
        planned = {_pair(source, rule.ports) for rule in firewall.node_rules(self.stack, node)
                   for source in rule.sources}
        problems += [f"+ {s} port {p}" for s, p in sorted(live - planned)]
        problems += [f"- {s} port {p}" for s, p in sorted(planned - live)]
        return problems

    def endpoint_args(self, lb: Node) -> list[str]:
        """A load balancer as the client module takes it: ADDRESS PORT plain|tls HOST CA."""
        tls = bool(self.stack.a.lb_tls)
        return [lb.address, "443" if tls else "80", "tls" if tls else "plain", self.stack.canonical_domain,
                self.client_ca]

    def client(self, *args: str) -> list[str]:
        """argv of the client module run on the bridge (halgen.rehearse.smokeclient)."""
        return [*self.network.enter(), sys.executable, "-m", "halgen.rehearse.smokeclient", *args]

    def smoke(self) -> list[Check]:
        """The loopback rehearsal's smoke test through every load balancer, from a client on
        the bridge: health, a PostgreSQL write read back, a Redis session, 444 for others."""
        checks: list[Check] = []
        for lb in self.stack.lbs:
            argv = self.client("smoke", lb.name, *self.endpoint_args(lb), self.stack.a.lb_health_path)
            result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            checks += [Check(**json.loads(line)) for line in result.stdout.splitlines()]
            if result.returncode != 0:
                checks.append(Check(f"{lb.name}: smoke client", False, result.stderr.strip()[-500:]))
        return checks

    def reachability(self, names: list[str]) -> list[Check]:
        """From the bridge (outside every allowed source but 'anywhere'): each port the
        node's firewall opens to anywhere answers, and SSH, open only to the admins'
        networks, gets no answer at all (ufw drops, it does not refuse)."""
        bridge = ipaddress.IPv4Address(str(self.network.gateway.ip))
        expected: list[tuple[str, int, str]] = []
        for node in (n for n in self.stack.nodes if n.name in names):
            for rule in firewall.node_rules(self.stack, node):
                if any(bridge in ipaddress.ip_network(source) for source in rule.sources):
                    expected += [(node.address, port, "open") for port in rule.ports]
            if not any(bridge in ipaddress.ip_network(c) for c in self.stack.a.admin_cidrs):
                expected.append((node.address, 22, "filtered"))
        probe = ("import socket, sys\nfor spec in sys.argv[1:]:\n address, port = spec.split(':')\n"
                 " s = socket.socket(); s.settimeout(3)\n"
                 " try:\n  s.connect((address, int(port))); print('open')\n"
                 " except socket.timeout:\n  print('filtered')\n"
                 " except OSError:\n  print('refused')\n s.close()\n")
        result = subprocess.run([*self.network.enter(), sys.executable, "-c", probe,
                                 *(f"{a}:{p}" for a, p, _ in expected)], capture_output=True, text=True, timeout=600)
        seen = result.stdout.split()
        names_by_address = {n.address: n.name for n in self.stack.nodes}
        return [Check(f"{names_by_address[a]}: port {p} from the bridge is {want}", got == want, got)
                for (a, p, want), got in zip(expected, seen + ["?"] * len(expected), strict=False)]

    def data_checks(self) -> list[Check]:
        """Across the stack: replication streams to every replica, every Sentinel finds a
        quorum for the master, and a backup of each store restores from the Object
        Storage stand-in, each by the node's own scripts."""
        stack, checks = self.stack, []
        sbin = stack.dbs[0].paths.sbin
        project = stack.a.project

        def check(node: str, what: str, argv: list[str], expect: str = "", timeout: float = 300) -> None:
            result = self.containers[node].run(argv, timeout=timeout)
            out = (result.stdout + result.stderr).strip()
            ok = result.returncode == 0 and expect in result.stdout
            checks.append(Check(f"{node}: {what}", ok, out.splitlines()[-1] if out else f"exit {result.returncode}"))

        primary = stack.dbs[0].name
        psql = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c"]
        check(primary, f"{len(stack.dbs) - 1} replica(s) streaming",
              [*psql, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"], str(len(stack.dbs) - 1))
        for replica in stack.dbs[1:]:
            check(replica.name, "in recovery (a replica)", [*psql, "SELECT pg_is_in_recovery()"], "t")
        if stack.patroni:
            member = stack.etcd_members[0]
            cert, key = stack.etcd_tls_files(member)
            tls = ([f"--cacert={member.paths.stack_ca_file}", f"--cert={cert}", f"--key={key}"]
                   if stack.a.vpc_tls else [])
            check(member.name, f"etcd: all {len(stack.etcd_members)} members healthy",
                  ["sh", "-c", f"ETCDCTL_API=3 etcdctl --endpoints={stack.etcd_url(member, stack.etcd_client_port)} "
                   f"{' '.join(tls)} endpoint health --cluster 2>&1 | grep -c 'is healthy'"],
                  str(len(stack.etcd_members)))
            check(primary, "Patroni: this node leads, every member running",
                  ["sh", "-c", f"patronictl -c {stack.dbs[0].paths.patroni_conf} list -f tsv | "
                   "awk -F'\\t' 'NR > 1 && $5 == \"running\" {n++} $2 == \"" + primary + "\" {r = $4} "
                   "END {print r, n}'"], f"Leader {len(stack.dbs)}")
        if stack.sentinels:
            password = secrets.read(self.repo)["SENTINEL_PASSWORD"]
            for node in stack.sentinels:
                tls = ["--tls", "--cacert", node.paths.stack_ca_file] if stack.a.vpc_tls else []
                check(node.name, "Sentinel quorum for the master",
                      ["redis-cli", "-h", node.address, "-p", str(stack.sentinel_port), *tls, "--user", "default",
                       "--pass", password, "--no-auth-warning", "SENTINEL", "CKQUORUM", stack.redis_master_name], "OK")
        check(primary, "full backup to Object Storage", [f"{sbin}/{project}-pg-backup", "full"])
        verifier = stack.dbs[-1].name
        check(verifier, "the latest backup restores and answers", [f"{sbin}/{project}-pg-verify"])
        master = stack.redis[0].name
        check(master, "Redis snapshot to Object Storage", [f"{sbin}/{project}-redis-backup"])
        check(stack.redis[-1].name, "the newest Redis snapshot restores and checks",
              ["sh", "-c", f"{sbin}/{project}-redis-restore /tmp/restored.rdb && redis-check-rdb /tmp/restored.rdb"],
              "RDB looks OK")
        return checks

    # -- stopping ------------------------------------------------------------------------------
    def close(self) -> None:
        for container in self.containers.values():
            container.pull_plug()
        self.processes.stop_all()
        for overlay in self.overlays.values():
            overlay.unmount()
        self.network.delete()
        if not self.keep:  # the virtual machines' disks (gigabytes each)
            for disk in (self.work / "nodes").glob("*.img"):
                disk.unlink()

    def __enter__(self) -> BootedStack:
        """Ctrl-C, TERM or HUP end the rehearsal through close(), like any error."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[signum] = signal.signal(signum, _interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with signals_ignored():
                self.close()
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _pair(source: str, ports: tuple[int, ...]) -> tuple[str, str]:
    cidr = "0.0.0.0/0" if source in ("any", "0.0.0.0/0") else str(ipaddress.ip_network(source, strict=False))
    return cidr, ",".join(str(p) for p in ports)


# -- the command -------------------------------------------------------------------------------
NEEDED = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "nsenter": "util-linux",
          "ip": "iproute2", "nginx": "nginx", "openssl": "openssl"}


VM_NEEDED = {"qemu-system-x86_64": "qemu-system-x86", "mkfs.ext4": "e2fsprogs"}


def missing_programs(vm: bool = False) -> list[str]:
    needed = {**NEEDED, **(VM_NEEDED if vm else {})}
    missing = [f"{name} (apt-get install {package})" for name, package in needed.items() if not shutil.which(name)]
    if objectstore.moto_server() is None:
        missing.append("moto_server (pip install 'moto[server]')")
    return missing


@dataclass
class NodesReport:
    project: str
    subnet: str
    nodes: list[NodeReport] = field(default_factory=list)
    smoke: list[Check] = field(default_factory=list)
    data: list[Check] = field(default_factory=list)
    drills: list[Any] = field(default_factory=list)  # nodedrills.NodeDrill
    facts: dict[str, object] = field(default_factory=dict)
    wall_seconds: float = 0.0
    failure: str = ""

    @property
    def passed(self) -> bool:
        return (not self.failure and bool(self.nodes) and all(n.ok for n in self.nodes)
                and all(c.ok for c in self.smoke + self.data) and all(d.ok for d in self.drills))

    def json(self) -> str:
        return json.dumps(dataclasses.asdict(self) | {"passed": self.passed}, indent=2) + "\n"

    def text(self) -> str:
        lines = [f"stack {self.project}: {len(self.nodes)} nodes booted from their user-data on a private "
                 f"bridge ({self.subnet}), {self.wall_seconds:.0f} s in all", ""]
        for n in self.nodes:
            seconds = f"{n.seconds_to_done:6.1f} s" if n.seconds_to_done is not None else "     - "
            lines.append(f"{'ok  ' if n.ok else 'FAIL'} {n.name:<8} {n.address:<15} cloud-init {n.cloud_init} "
                         f"after {seconds}, system {n.system or '?'}")
            problems = n.errors + [f"failed unit {u}" for u in n.failed_units] + [
                f"{unit} is {state}" for unit, state in n.services.items() if state != "enabled/active"]
            problems += [f"ufw {d}" for d in n.firewall_diff]
            lines += [f"       {p}" for p in problems]
        for title, checks in (("smoke test through the load balancers", self.smoke),
                              ("replication, Sentinel, backups" if self.smoke else "from the bridge", self.data)):
            if checks:
                lines += ["", f"{title}: {sum(c.ok for c in checks)}/{len(checks)}"]
                lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks]
        if self.drills:
            lines += ["", "drills (a node loses its power):"]
            lines += [f"  {'ok  ' if d.ok else 'FAIL'} {d.name}: {d.summary}" for d in self.drills]
        if self.failure:
            lines += ["", f"FAILED: {self.failure}"]
        lines += ["", "PASSED" if self.passed else "NOT PASSED"]
        return "\n".join(lines) + "\n"


def first_of_each_role(stack: Stack) -> list[str]:
    return [next(n.name for n in stack.nodes if n.role == role) for role in dict.fromkeys(n.role for n in stack.nodes)]


def rehearse_vms(repo: Path, stack: Stack, keep: bool, names: list[str]) -> NodesReport:
    """Boot ``names`` one at a time as virtual machines: check each, and its firewall from
    the bridge through its own kernel's netfilter."""
    def steps(booted: BootedStack, report: NodesReport) -> None:
        for name in names:
            report.nodes.append(booted.first_boot(name, timeout=2400))
            report.data += booted.reachability([name])
            booted.containers[name].pull_plug()

    return _rehearse(repo, stack, keep, "vm", steps)


def rehearse_nodes(repo: Path, stack: Stack, keep: bool,
                   drills: list[Callable[[BootedStack], Any]] | None = None) -> NodesReport:
    """Boot, check, smoke-test, check the data tier, run the drills, power everything off."""
    def steps(booted: BootedStack, report: NodesReport) -> None:
        booted.boot()
        booted.wait_first_boot()
        report.nodes = list(booted.check().values())
        log("smoke test through the load balancers, from the bridge")
        report.smoke = booted.smoke()
        log("replication, Sentinel quorum, a backup and a restore of each store")
        report.data = booted.data_checks()
        for drill in drills or []:
            if not all(c.ok for c in report.smoke + report.data) or not all(n.ok for n in report.nodes):
                report.failure = "the stack did not boot healthy, so no drill ran"
                break
            report.drills.append(drill(booted))

    return _rehearse(repo, stack, keep, "containers", steps)


def _rehearse(repo: Path, stack: Stack, keep: bool, machines: str,
              steps: Callable[[BootedStack, NodesReport], None]) -> NodesReport:
    report = NodesReport(stack.a.project, stack.a.vpc_subnet)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"halgen-{machines}-", dir="/var/tmp"))
    booted = BootedStack(repo.resolve(), stack, work, keep=keep, machines=machines)
    try:
        with booted:
            booted.prepare()
            steps(booted, report)
    except (HostError, TimeoutError, OSError, subprocess.SubprocessError) as err:
        report.failure = str(err)
    except Interrupted as signal_name:
        report.failure = f"interrupted by {signal_name}: stopped everything it started"
    finally:
        report.nodes = report.nodes or list(booted.reports.values())
        report.facts = booted.facts
        if keep:
            log(f"kept {work} (logs/: console and serial logs; nodes/<node>/upper: what each node wrote)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.wall_seconds = round(time.monotonic() - began, 1)
    return report
