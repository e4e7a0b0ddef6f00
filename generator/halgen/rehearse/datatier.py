"""Start the generated data tier of a rehearsal render: PostgreSQL (as an unprivileged
user), Redis and Sentinel, and run the generated PostgreSQL failover locally."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from halgen.compiler import secrets
from halgen.compiler.model import Node
from halgen.host.localpg import as_postgres, installed_pg_version, pg_superuser  # noqa: F401 - re-exported
from halgen.host.processes import run, wait_until
from halgen.rehearse.layout import LoopbackStack, RehearsalError

# --- PostgreSQL (as an unprivileged user: see halgen.host.localpg) ----------------

def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


def pg_ready(node: Node) -> bool:
    return subprocess.run([f"{node.paths.pg_bin}/pg_isready", "-q", "-h", node.paths.pg_run_dir, "-p", "5432"],
                          timeout=10).returncode == 0


def start_pg(ls: LoopbackStack, node: str) -> subprocess.Popen:
    n = ls.node(node)
    proc = ls.spawn(as_postgres(f"{n.paths.pg_bin}/postgres", "-c",
                                f"config_file={n.paths.pg_conf_dir}/postgresql.conf"), node, cwd=n.paths.root)
    wait_until(lambda: pg_ready(n), 30, f"{node} to accept connections")
    return proc


def psql(ls: LoopbackStack, node: str, sql: str, database: str = "postgres", timeout: float = 30) -> str:
    """One statement as the superuser over the node's socket; its result, unaligned."""
    n = ls.node(node)
    out = run(as_postgres(f"{n.paths.pg_bin}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                          "-h", n.paths.pg_run_dir, "-p", "5432", "-d", database, "-c", sql), timeout=timeout)
    if out.returncode != 0:
        raise RehearsalError(f"psql on {node}: {out.stderr.strip()}")
    return out.stdout.strip()


def node_script(ls: LoopbackStack, node: str, name: str, *args: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = Path(ls.node(node).paths.sbin) / f"{ls.stack.project}-{name}"
    return run(["bash", str(path), *args], env=env)


def checked(result: subprocess.CompletedProcess[str], what: str) -> None:
    """Raise a RehearsalError with the end of the output when ``result`` failed."""
    if result.returncode != 0:
        raise RehearsalError(f"{what} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def init_primary(ls: LoopbackStack) -> None:
    """initdb the first DB node, as the Debian package does on a fresh node."""
    for db in ls.stack.dbs:
        chown_postgres(Path(db.paths.root))
    primary = ls.stack.dbs[0]
    checked(run(as_postgres(f"{primary.paths.pg_bin}/initdb", "-D", primary.paths.pg_data, "-U", pg_superuser(),
                             "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")),
             "initdb")


# The setup script prints this once roles, database and slots exist; its last step,
# the pgBackRest stanza, needs Object Storage.
SETUP_DONE = "roles, database and slots are in place"
# ... and exits with this when only that step failed (the database serves; backups do not).
SETUP_BACKUPS_FAILED = 3


def start_pg_tier(ls: LoopbackStack, object_storage: bool = True) -> dict[str, subprocess.Popen]:
    """initdb the primary, run the generated setup and bootstrap scripts, start every DB node.

    Without ``object_storage`` the setup's last step (the pgBackRest stanza in the
    bucket) fails and is accepted: archiving then fails harmlessly and PostgreSQL
    keeps the WAL until a later archive succeeds."""
    init_primary(ls)
    primary = ls.stack.dbs[0]
    procs = {primary.name: start_pg(ls, primary.name)}
    setup = node_script(ls, primary.name, "pg-setup-primary")
    if object_storage or SETUP_DONE not in setup.stdout or setup.returncode not in (0, SETUP_BACKUPS_FAILED):
        checked(setup, f"{ls.stack.project}-pg-setup-primary")
    for replica in ls.stack.dbs[1:]:
        checked(node_script(ls, replica.name, "pg-bootstrap-replica"), f"bootstrap of replica {replica.name}")
        procs[replica.name] = start_pg(ls, replica.name)
    return procs


# --- Redis and Sentinel ----------------------------------------------------------

def stack_secret(ls: LoopbackStack, name: str) -> str:
    """One value of the rehearsal render's secrets/secrets.env."""
    return secrets.read(ls.repo)[name]


def redis_tls_args(ls: LoopbackStack, address: str) -> list[str]:
    """redis-cli's TLS options for the node at ``address`` (none with vpc_tls off): TLS,
    checking the server's certificate against the stack CA as that node trusts it."""
    if not ls.stack.a.vpc_tls:
        return []
    node = next(n for n in ls.stack.nodes if n.address == address)
    return ["--tls", "--cacert", node.paths.stack_ca_file]


def redis_cli(ls: LoopbackStack, address: str, port: int, *args: str, user: str = "admin") -> str:
    """redis-cli as an operator would run it: Redis's admin user, or a Sentinel's default user."""
    if port == ls.stack.sentinel_port:
        auth = ["--user", "default", "--pass", stack_secret(ls, "SENTINEL_PASSWORD")]
    else:
        auth = ["--user", user, "--pass", stack_secret(ls, f"REDIS_{user.upper()}_PASSWORD")]
    out = subprocess.run(["redis-cli", "-h", address, "-p", str(port), *redis_tls_args(ls, address), *auth,
                          "--no-auth-warning", *args],
                         capture_output=True, text=True, timeout=5)
    return out.stdout.strip()


def start_redis(ls: LoopbackStack, node: Node) -> subprocess.Popen:
    proc = ls.spawn(["redis-server", f"{node.paths.redis_conf_dir}/redis.conf"], f"redis-{node.name}",
                    cwd=node.paths.root)
    wait_until(lambda: redis_cli(ls, node.address, ls.stack.redis_port, "PING") == "PONG", 15,
               f"redis on {node.name}")
    return proc


def start_redis_tier(ls: LoopbackStack) -> dict[str, subprocess.Popen]:
    """Redis nodes, then the Sentinels; returns when every Sentinel sees the whole topology."""
    procs = {node.name: start_redis(ls, node) for node in ls.stack.redis}
    for node in ls.stack.sentinels:
        procs[f"sentinel-{node.name}"] = ls.spawn(["redis-sentinel", f"{node.paths.redis_conf_dir}/sentinel.conf"],
                                                  f"sentinel-{node.name}", cwd=node.paths.root)
    wait_for_sentinels(ls)
    return procs


def wait_for_sentinels(ls: LoopbackStack) -> None:
    name = ls.stack.redis_master_name
    replicas = len(ls.stack.redis) - 1
    others = len(ls.stack.sentinels) - 1
    port = ls.stack.redis_port
    # Every replica must have finished its first sync (diskless sync waits 5 s for
    # more replicas), or a failover right away would promote an empty replica.
    master = ls.stack.redis[0]
    wait_until(lambda: redis_cli(ls, master.address, port, "INFO", "replication").count("state=online") == replicas,
               30, "the Redis replicas to be in sync")
    wait_until(lambda: redis_cli(ls, master.address, port, "SET", "halgen:probe", "1") == "OK", 30,
               "the Redis master to accept writes")

    def sees_everyone(sentinel: Node) -> bool:
        ask = ("SENTINEL", "replicas", name), ("SENTINEL", "sentinels", name)
        replies = [redis_cli(ls, sentinel.address, ls.stack.sentinel_port, *question) for question in ask]
        return replies[0].count("slave") >= replicas and replies[1].count("runid") >= others

    for node in ls.stack.sentinels:
        wait_until(functools.partial(sees_everyone, node), 30, f"sentinel on {node.name} to see the topology",
                   interval=0.2)


def master_address(ls: LoopbackStack) -> str:
    sentinel = ls.stack.sentinels[0]
    return redis_cli(ls, sentinel.address, ls.stack.sentinel_port, "SENTINEL", "get-master-addr-by-name",
                     ls.stack.redis_master_name).splitlines()[0]


# --- the generated PostgreSQL failover ----------------------------------------------

FAKE_SSH = """#!/usr/bin/env bash
# Stands in for ssh on a one-machine rehearsal: runs the command here, as ssh would
# run it through the remote shell; 'sudo -n -u postgres' becomes runuser as root
# and nothing as any other user (PostgreSQL then runs as that user); 'sudo -n' goes.
while [[ "$1" == -o ]]; do shift 2; done
shift  # user@address
cmd="$*"
if [[ "$(id -u)" == 0 ]]; then
    cmd="${cmd//sudo -n -u postgres /runuser -u postgres -- }"
else
    cmd="${cmd//sudo -n -u postgres /}"
fi
cmd="${cmd//sudo -n /}"  # root's commands run as whoever runs the rehearsal
exec bash -c "$cmd"
"""


def run_pg_failover(ls: LoopbackStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The generated scripts/pg-failover.sh, with a local stand-in for ssh."""
    fake = ls.base / "fake-ssh"
    if not fake.exists():
        fake.write_text(FAKE_SSH)
        fake.chmod(0o755)
    return run(["bash", str(ls.repo / "scripts" / "pg-failover.sh"), *args],
               env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PG_SSH": str(fake)})
