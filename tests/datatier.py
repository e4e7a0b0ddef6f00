"""The generated data tier on loopback for the tests: halgen.rehearse's machinery plus
an S3-compatible server (moto, test-only) standing in for Object Storage."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from halgen.compiler import pipeline
from halgen.compiler.loader import from_mapping
from halgen.host.processes import wait_for_port, wait_until  # noqa: F401
from halgen.rehearse import datatier, layout
from halgen.rehearse.datatier import (  # noqa: F401  (re-exported for the tests)
    as_postgres,
    chown_postgres,
    installed_pg_version,
    master_address,
    node_script,
    psql,
    redis_cli,
    redis_tls_args,
    run_pg_failover,
    stack_secret,
    start_pg,
    start_redis,
    start_redis_tier,
    wait_for_sentinels,
)
from halgen.rehearse.layout import lay_out, make_base

from conftest import IN_CI, require

LOOPBACK = "127.20.0.0/24"


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


def other_ca(directory: Path) -> Path:
    """A CA certificate of some other stack: it never signed these nodes' certificates."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(directory / "other-ca.key"), "-out", str(directory / "other-ca.crt"), "-days", "1",
                    "-subj", "/CN=another stack CA"], check=True, capture_output=True)
    return directory / "other-ca.crt"


@dataclass
class LoopbackStack(layout.LoopbackStack):
    s3: Any = None


def loopback_stack(overrides: dict) -> LoopbackStack:
    """Render ``overrides`` for a rehearsal under a fresh, world-traversable base dir,
    with an S3-compatible server (moto, over TLS) standing in for Object Storage."""
    base = make_base("halgen-rt-")
    answers = pipeline.complete_answers(from_mapping(overrides))
    ls = lay_out(answers, base, LOOPBACK, LoopbackStack,
                 provided_secrets={"OBJ_PG_ACCESS_KEY": "halgentestkey", "OBJ_PG_SECRET_KEY": "halgentestsecret",
                                   "OBJ_REDIS_ACCESS_KEY": "halgenrediskey",
                                   "OBJ_REDIS_SECRET_KEY": "halgenredissecret"})
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
                    f"/CN={stack.a.backup_endpoint}", "-addext",
                    f"subjectAltName=DNS:{stack.a.backup_endpoint},IP:{address},DNS:{address}",  # pgBackRest checks DNS names only
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    for node in stack.nodes:
        shutil.copy(cert, node.paths.ca_file)
    # moto speaks plain HTTP and closes connections that pgBackRest keeps alive, so
    # nginx terminates TLS in front of it (pgBackRest 2.45 speaks S3 over TLS only).
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    endpoint = stack.a.backup_endpoint
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


def cleanup(ls: LoopbackStack) -> None:
    ls.stop_all()
    if os.environ.get("HALGEN_KEEP_TEST_DIRS"):  # for debugging: logs stay in <base>/logs/
        print(f"kept {ls.base}")
        return
    shutil.rmtree(ls.base, ignore_errors=True)


def start_pg_tier(ls: LoopbackStack) -> None:
    """The package's start, plus: running the setup script again changes nothing."""
    datatier.start_pg_tier(ls)
    again = node_script(ls, ls.stack.dbs[0].name, "pg-setup-primary")
    assert again.returncode == 0, f"setup-primary is idempotent: {again.stderr}"
