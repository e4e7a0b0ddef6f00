"""The generated data tier on loopback for the tests: halgen.rehearse's machinery plus
an S3-compatible server (moto, test-only) standing in for Object Storage."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from halgen.compiler import pipeline
from halgen.compiler.loader import from_mapping
from halgen.host import objectstore
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
    """The Object Storage stand-in on the rehearsal's storage address, trusted by every
    node, and a client of it for the tests to look into the bucket."""
    import boto3

    stack = ls.stack
    storage = objectstore.start(ls.processes, ls.base, stack.target.object_storage_address, stack.a.backup_endpoint,
                                stack.object_storage_region, stack.backup_bucket)
    for node in stack.nodes:
        shutil.copy(storage.cert, node.paths.ca_file)
    ls.s3 = boto3.client("s3", endpoint_url=storage.url, aws_access_key_id="halgentestkey",
                         aws_secret_access_key="halgentestsecret", region_name=stack.object_storage_region,
                         verify=str(storage.cert))


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
