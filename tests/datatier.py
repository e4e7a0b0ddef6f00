"""Start the generated data tier on loopback: PostgreSQL as an unprivileged user,
Redis and Sentinel, all from a rehearsal render."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from halgen import compiler, schema, secrets
from halgen.answers import from_mapping
from halgen.model import Node, Stack, derive
from halgen.rehearsal import install_nodes
from halgen.render import build, render

from conftest import IN_CI, require
from realserver import wait_for_port

LOOPBACK = "127.20.0.0/24"


def installed_pg_version() -> int | None:
    versions = sorted(int(p.name) for p in Path("/usr/lib/postgresql").glob("*") if p.name.isdigit())
    return versions[-1] if versions else None


def require_postgres() -> int:
    require("runuser")
    version = installed_pg_version()
    if version is None:
        message = "needs PostgreSQL server binaries (apt-get install postgresql)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    if os.geteuid() != 0:
        message = "PostgreSQL tests run the server as the postgres user and need root"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    return version


def as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


def chown_postgres(path: Path) -> None:
    subprocess.run(["chown", "-R", "postgres:postgres", str(path)], check=True)


@dataclass
class LoopbackStack:
    base: Path
    repo: Path
    stack: Stack
    procs: list[subprocess.Popen] = field(default_factory=list)
    s3: Any = None

    def node(self, name: str) -> Node:
        return next(n for n in self.stack.nodes if n.name == name)

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)


def loopback_stack(overrides: dict) -> LoopbackStack:
    """Render ``overrides`` for a rehearsal under a fresh, world-traversable base dir,
    with an S3-compatible server (moto, over TLS) standing in for Object Storage."""
    base = Path(tempfile.mkdtemp(prefix="halgen-rt-"))
    base.chmod(0o755)
    target = compiler.rehearsal_target(base / "n", LOOPBACK)
    answers = compiler.complete_answers(from_mapping(overrides))
    repo = base / "repo"
    render(answers, repo, target=target)
    stack = derive(answers, target)
    values = secrets.read(repo)
    secrets.write(repo, {**values, "OBJ_ACCESS_KEY": "halgentestkey", "OBJ_SECRET_KEY": "halgentestsecret"})
    build(repo, answers, target)
    install_nodes(repo, stack)
    ls = LoopbackStack(base=base, repo=repo, stack=stack)
    try:
        start_object_storage(ls)
    except BaseException:
        cleanup(ls)
        raise
    return ls


def start_object_storage(ls: LoopbackStack) -> None:
    """moto's S3 server on the rehearsal's storage address, TLS with a throwaway CA
    that every node trusts, and the (empty) backup bucket."""
    import boto3

    stack = ls.stack
    address = stack.target.object_storage_address
    cert, key = ls.base / "s3.crt", ls.base / "s3.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    f"/CN={stack.a['backup_endpoint']}", "-addext",
                    f"subjectAltName=DNS:{stack.a['backup_endpoint']},IP:{address},DNS:{address}",  # pgBackRest checks DNS names only
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    for node in stack.nodes:
        shutil.copy(cert, node.paths.ca_file)
    # moto speaks plain HTTP and closes connections that pgBackRest keeps alive, so
    # nginx terminates TLS in front of it (pgBackRest 2.45 speaks S3 over TLS only).
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    endpoint = stack.a["backup_endpoint"]
    backend = str(ipaddress.IPv4Address(address) - 1)
    ls.spawn([moto, "-H", backend, "-p", "80"], "s3",
             env={**os.environ, "MOTO_S3_CUSTOM_ENDPOINTS": f"http://{endpoint},{endpoint}"})
    wait_for_port(backend, 80, 30)
    prefix = ls.base / "s3-tls"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(f"""pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_max_body_size 0;
    upstream moto {{ server {backend}:80; keepalive 8; }}
    server {{
        listen {address}:443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://moto;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
""")
    ls.spawn(["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], "s3-tls")
    wait_for_port(address, 443, 30)
    ls.s3 = boto3.client("s3", endpoint_url=f"https://{address}:443", aws_access_key_id="halgentestkey",
                         aws_secret_access_key="halgentestsecret", region_name=stack.object_storage_region,
                         verify=str(cert))
    ls.s3.create_bucket(Bucket=stack.backup_bucket,
                        CreateBucketConfiguration={"LocationConstraint": stack.object_storage_region})


def bucket_bytes(ls: LoopbackStack, prefix: str = "") -> int:
    pages = ls.s3.get_paginator("list_objects_v2").paginate(Bucket=ls.stack.backup_bucket, Prefix=prefix)
    return sum(obj["Size"] for page in pages for obj in page.get("Contents", []))


def defaults_with(**overrides: object) -> dict:
    return {**schema.defaults(), **overrides}


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check`` until it returns something truthy; an exception counts as 'not yet'
    (a server that is still starting), and the last one is shown on a timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (AssertionError, OSError, IndexError, subprocess.SubprocessError) as err:
            last_error, result = err, None
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})"
                                                                            if last_error else ""))


def cleanup(ls: LoopbackStack) -> None:
    ls.stop_all()
    if os.environ.get("HALGEN_KEEP_TEST_DIRS"):  # for debugging: logs stay in <base>/*.log
        print(f"kept {ls.base}")
        return
    shutil.rmtree(ls.base, ignore_errors=True)


def start_pg(ls: LoopbackStack, node: str) -> None:
    n = ls.node(node)
    ls.spawn(as_postgres(f"{n.paths.pg_bin}/postgres", "-c", f"config_file={n.paths.pg_conf_dir}/postgresql.conf"),
             node)
    wait_until(lambda: subprocess.run([f"{n.paths.pg_bin}/pg_isready", "-q", "-h", n.paths.pg_run_dir, "-p", "5432"])
               .returncode == 0, 30, f"{node} to accept connections")


def node_script(ls: LoopbackStack, node: str, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = Path(ls.node(node).paths.root) / "usr/local/sbin" / f"{ls.stack.project}-{name}"
    return subprocess.run(["bash", str(path), *args], capture_output=True, text=True, timeout=120)


def start_pg_tier(ls: LoopbackStack) -> None:
    """initdb the primary, run the generated setup and bootstrap scripts, start every DB node."""
    for db in ls.stack.dbs:
        chown_postgres(Path(db.paths.root))
    primary = ls.stack.dbs[0]
    init = subprocess.run(as_postgres(f"{primary.paths.pg_bin}/initdb", "-D", primary.paths.pg_data, "-U", "postgres",
                                      "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8",
                                      "--no-instructions"), capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    start_pg(ls, primary.name)
    setup = node_script(ls, primary.name, "pg-setup-primary")
    assert setup.returncode == 0, setup.stderr
    assert node_script(ls, primary.name, "pg-setup-primary").returncode == 0, "setup-primary is idempotent"
    for replica in ls.stack.dbs[1:]:
        boot = node_script(ls, replica.name, "pg-bootstrap-replica")
        assert boot.returncode == 0, boot.stderr + boot.stdout
        start_pg(ls, replica.name)


def redis_cli(ls: LoopbackStack, address: str, port: int, *args: str) -> str:
    password = next(line.split("=", 1)[1] for line in (ls.repo / "secrets" / "secrets.env").read_text().splitlines()
                    if line.startswith("REDIS_PASSWORD="))
    auth = ["-a", password, "--no-auth-warning"] if port != 26379 else []
    out = subprocess.run(["redis-cli", "-h", address, "-p", str(port), *auth, *args],
                         capture_output=True, text=True, timeout=5)
    return out.stdout.strip()


def start_redis_tier(ls: LoopbackStack) -> dict[str, subprocess.Popen]:
    procs = {}
    for node in ls.stack.redis:
        procs[node.name] = ls.spawn(["redis-server", f"{node.paths.redis_conf_dir}/redis.conf"], f"redis-{node.name}")
    for node in ls.stack.redis:
        wait_until(lambda n=node: redis_cli(ls, n.address, 6379, "PING") == "PONG", 15, f"redis on {node.name}")
    for node in ls.stack.sentinels:
        ls.spawn(["redis-sentinel", f"{node.paths.redis_conf_dir}/sentinel.conf"], f"sentinel-{node.name}")
    name = ls.stack.redis_master_name
    replicas = len(ls.stack.redis) - 1
    others = len(ls.stack.sentinels) - 1
    # Every replica must have finished its first sync (diskless sync waits 5 s for
    # more replicas), or a failover right away would promote an empty replica.
    master = ls.stack.redis[0]
    wait_until(lambda: redis_cli(ls, master.address, 6379, "INFO", "replication").count("state=online") == replicas,
               30, "the Redis replicas to be in sync")
    wait_until(lambda: redis_cli(ls, master.address, 6379, "SET", "halgen:probe", "1") == "OK", 30,
               "the Redis master to accept writes")
    for node in ls.stack.sentinels:
        wait_until(lambda n=node: redis_cli(ls, n.address, 26379, "SENTINEL", "replicas", name).count("slave") >= replicas
                   and redis_cli(ls, n.address, 26379, "SENTINEL", "sentinels", name).count("runid") >= others,
                   30, f"sentinel on {node.name} to see the topology", interval=0.2)
    return procs


def master_address(ls: LoopbackStack) -> str:
    sentinel = ls.stack.sentinels[0]
    return redis_cli(ls, sentinel.address, 26379, "SENTINEL", "get-master-addr-by-name",
                     ls.stack.redis_master_name).splitlines()[0]


FAKE_SSH = """#!/usr/bin/env bash
# Stands in for ssh on a one-machine rehearsal: runs the command here, as ssh would
# run it through the remote shell; 'sudo -n -u postgres' becomes runuser.
while [[ "$1" == -o ]]; do shift 2; done
shift  # user@address
cmd="$*"
cmd="${cmd//sudo -n -u postgres /runuser -u postgres -- }"
exec bash -c "$cmd"
"""


def run_pg_failover(ls: LoopbackStack, new_primary: str) -> subprocess.CompletedProcess[str]:
    """The generated scripts/pg-failover.sh, with a local stand-in for ssh."""
    fake = ls.base / "fake-ssh"
    if not fake.exists():
        fake.write_text(FAKE_SSH)
        fake.chmod(0o755)
    return subprocess.run(["bash", str(ls.repo / "scripts" / "pg-failover.sh"), new_primary], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PG_SSH": str(fake)})
