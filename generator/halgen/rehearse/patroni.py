"""Start the generated etcd cluster and Patroni on one machine, and ask Patroni what it
knows: who leads, who follows, how far behind.

What systemd does for them on a node is done here the way the node's files say:
- etcd: Debian's etcd.service reads /etc/default/etcd; the drop-in's LoadCredential=
  hands it the node's key pair under /run/credentials/etcd.service, here the source
  files themselves; peers skip one address check (see etcd_environment);
- Patroni: Debian's patroni.service runs 'patroni /etc/patroni/config.yml' as postgres
  with the drop-in's EnvironmentFile (the passwords), here the same; its watchdog is
  a stand-in for softdog (softdog.py) that kills the node's Patroni and PostgreSQL.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from halgen.compiler.model import Node
from halgen.formats import systemd
from halgen.host.localpg import as_postgres
from halgen.host.processes import run, wait_until
from halgen.rehearse.layout import LoopbackStack, RehearsalError
from halgen.rehearse.softdog import Softdog
from halgen.rehearse.units import read_env_file

DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _drop_in(node: Node, unit: str, project: str) -> Path:
    return Path(node.paths.root) / "etc/systemd/system" / f"{unit}.service.d" / f"{project}.conf"


def etcd_environment(ls: LoopbackStack, node: Node) -> dict[str, str]:
    """/etc/default/etcd, with the credential paths pointing at the files systemd would copy."""
    env = read_env_file(Path(node.paths.etcd_env_file))
    credentials = {}
    for entry in systemd.parse(_drop_in(node, "etcd", ls.stack.project).read_text())[0]:
        if entry.key == "LoadCredential":
            name, _, source = entry.value.partition(":")
            credentials[f"{ls.stack.etcd_credentials}/{name}"] = source
    env = {key: credentials.get(value, value) for key, value in env.items()}
    if env.get("ETCD_PEER_CLIENT_CERT_AUTH") == "true":
        # etcd matches a peer's source address against its certificate's names; on one
        # machine every connection comes from 127.0.0.1, which no node's certificate
        # names. The certificates are still checked against the stack CA.
        env["ETCD_EXPERIMENTAL_PEER_SKIP_CLIENT_SAN_VERIFICATION"] = "true"
    return env


def start_etcd(ls: LoopbackStack, node: Node) -> subprocess.Popen:
    env = {"PATH": DEBIAN_PATH, **etcd_environment(ls, node)}
    Path(env["ETCD_DATA_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    return ls.spawn(["etcd"], f"etcd-{node.name}", env=env, cwd=node.paths.root)


def etcdctl(ls: LoopbackStack, node: Node, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """etcdctl (v3) against one member, as a client with that node's certificate."""
    env = etcd_environment(ls, node)
    tls = ([f"--cacert={env['ETCD_TRUSTED_CA_FILE']}", f"--cert={env['ETCD_CERT_FILE']}",
            f"--key={env['ETCD_KEY_FILE']}"] if ls.stack.a.vpc_tls else [])
    return run(["etcdctl", f"--endpoints={env['ETCD_ADVERTISE_CLIENT_URLS']}", *tls, "--command-timeout=3s",
                *args], timeout=timeout, env={"PATH": DEBIAN_PATH, "ETCDCTL_API": "3"})


def etcd_healthy(ls: LoopbackStack, node: Node) -> bool:
    return etcdctl(ls, node, "endpoint", "health").returncode == 0


def wait_for_etcd(ls: LoopbackStack, node: Node, timeout: float = 60) -> None:
    wait_until(functools.partial(_healthy_or_none, ls, node), timeout, f"etcd on {node.name} to be healthy",
               interval=0.5)


def _healthy_or_none(ls: LoopbackStack, node: Node) -> bool | None:
    return etcd_healthy(ls, node) or None


def start_etcd_cluster(ls: LoopbackStack) -> dict[str, subprocess.Popen]:
    """Every member at once (each waits for a majority), then until every one is healthy."""
    procs = {f"etcd-{node.name}": start_etcd(ls, node) for node in ls.stack.etcd_members}
    for node in ls.stack.etcd_members:
        wait_for_etcd(ls, node)
    return procs


def patroni_environment(node: Node, project: str) -> dict[str, str]:
    env: dict[str, str] = {"PATH": DEBIAN_PATH}
    for entry in systemd.parse(_drop_in(node, "patroni", project).read_text())[0]:
        if entry.key == "EnvironmentFile":
            env.update(read_env_file(Path(entry.value.removeprefix("-"))))
    return env


def start_patroni(ls: LoopbackStack, node: Node) -> subprocess.Popen:
    data = Path(node.paths.pg_data)
    data.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", node.paths.root], check=True)
    return ls.spawn(as_postgres("/usr/bin/patroni", node.paths.patroni_conf), f"patroni-{node.name}",
                    env=patroni_environment(node, ls.stack.project), cwd=node.paths.root)


def _context(ls: LoopbackStack) -> ssl.SSLContext | None:
    if not ls.stack.a.vpc_tls:
        return None
    return ssl.create_default_context(cafile=ls.stack.dbs[0].paths.stack_ca_file)


def api_status(ls: LoopbackStack, node: Node, path: str, timeout: float = 2) -> int:
    """The HTTP status of Patroni's REST API on ``node`` (0: no answer)."""
    url = f"{ls.stack.patroni_scheme}://{node.address}:{ls.stack.patroni_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=_context(ls)) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return 0


def leaders(ls: LoopbackStack) -> list[Node]:
    """The DB nodes whose Patroni says they are the primary (more than one: split brain)."""
    return [n for n in ls.stack.dbs if api_status(ls, n, "/primary") == 200]


def wait_for_leader(ls: LoopbackStack, timeout: float, among: list[Node] | None = None) -> Node:
    candidates = among or list(ls.stack.dbs)

    def one() -> Node | None:
        found = [n for n in candidates if api_status(ls, n, "/primary") == 200]
        return found[0] if len(found) == 1 else None

    return wait_until(one, timeout, "Patroni to elect a primary", interval=0.2)


def streaming(ls: LoopbackStack, leader: Node) -> set[str]:
    """Members streaming from ``leader`` (its pg_stat_replication: Patroni names each by member)."""
    out = run(as_postgres(f"{leader.paths.pg_bin}/psql", "-X", "-A", "-t", "-q", "-h", leader.paths.pg_run_dir,
                          "-p", str(ls.stack.pg_port), "-d", "postgres", "-c",
                          "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"), timeout=10)
    return set(out.stdout.split()) if out.returncode == 0 else set()


def wait_until_healthy(ls: LoopbackStack, timeout: float) -> Node:
    """One primary, every other member streaming from it, and Patroni's own view in etcd
    agreeing (every member 'running': what patronictl and pg-failover.sh go by); returns
    the primary."""
    others = {n.name for n in ls.stack.dbs}

    def healthy() -> Node | None:
        found = leaders(ls)
        if len(found) == 1 and others - {found[0].name} <= streaming(ls, found[0]) and _all_running(ls, found[0]):
            return found[0]
        return None

    return wait_until(healthy, timeout, "one primary with every other DB node streaming from it", interval=0.5)


def members(ls: LoopbackStack, node: Node) -> list[dict[str, object]]:
    """patronictl list, as data (empty when it does not answer)."""
    listing = patronictl(ls, node, "list", "-f", "json", timeout=30)
    try:
        found = json.loads(listing.stdout)
    except json.JSONDecodeError:
        return []
    return found if isinstance(found, list) else []


def _all_running(ls: LoopbackStack, node: Node) -> bool:
    found = members(ls, node)
    return len(found) == len(ls.stack.dbs) and all(m.get("State") in ("running", "streaming") for m in found)


def sync_standby(ls: LoopbackStack, node: Node) -> Node | None:
    """The member synchronous_mode names (None without it)."""
    names = {m.get("Member") for m in members(ls, node) if m.get("Role") == "Sync Standby"}
    return next((n for n in ls.stack.dbs if n.name in names), None)


def patronictl(ls: LoopbackStack, node: Node, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """patronictl with the node's configuration and the REST API password, as an operator runs it."""
    return run(["/usr/bin/patronictl", "-c", node.paths.patroni_conf, *args], timeout=timeout,
               env=patroni_environment(node, ls.stack.project))


def postmaster_pid(node: Node) -> int | None:
    try:
        return int(Path(node.paths.pg_data, "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def signal_node(ls: LoopbackStack, procs: dict[str, subprocess.Popen], node: Node, signum: int) -> None:
    """Patroni and PostgreSQL of one node (Patroni starts PostgreSQL in a session of its own)."""
    pid = postmaster_pid(node)
    if node.name in procs:
        ls.processes.signal_group(procs[node.name], signum)
    if pid:
        try:
            os.killpg(os.getpgid(pid), signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_leftovers(ls: LoopbackStack) -> None:
    """A PostgreSQL whose Patroni was killed outlives it (its own session): end it."""
    for node in ls.stack.patroni_dbs:
        pid = postmaster_pid(node)
        if pid is None:
            continue
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        proc = Path(f"/proc/{pid}")
        try:
            wait_until(lambda: not proc.exists() or None, 10, f"PostgreSQL {pid} to end")  # noqa: B023 - used at once
        except TimeoutError:
            pass  # reported as left running


def watchdogs(ls: LoopbackStack, procs: dict[str, subprocess.Popen]) -> dict[str, Softdog]:
    """A softdog stand-in per DB node (see softdog.py); a reset kills the node's Patroni and PostgreSQL."""
    owner = _postgres_ids()
    return {node.name: Softdog(Path(node.paths.run_dir) / "watchdog",
                               functools.partial(signal_node, ls, procs, node, signal.SIGKILL), owner)
            for node in ls.stack.patroni_dbs}


def _postgres_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def start_cluster(ls: LoopbackStack, procs: dict[str, subprocess.Popen]) -> None:
    """etcd, then Patroni on the first DB node (it creates the cluster), the setup script,
    then Patroni on the others, which copy it; returns when every replica streams.
    Fills ``procs`` (the node's name for Patroni, etcd-<node> for etcd)."""
    from halgen.rehearse import datatier

    procs.update(start_etcd_cluster(ls))
    first, *others = ls.stack.dbs
    procs[first.name] = start_patroni(ls, first)
    if wait_for_leader(ls, 90, [first]) != first:
        raise RehearsalError(f"{first.name} did not become the primary")
    setup = datatier.node_script(ls, first.name, "pg-setup-primary")
    if datatier.SETUP_DONE not in setup.stdout or setup.returncode not in (0, datatier.SETUP_BACKUPS_FAILED):
        raise RehearsalError(f"{ls.stack.project}-pg-setup-primary failed: {setup.stderr.strip()[-800:]}")
    for node in others:
        procs[node.name] = start_patroni(ls, node)
    wait_until_healthy(ls, 180)
