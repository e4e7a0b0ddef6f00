"""Start the generated data tier on loopback: PostgreSQL as an unprivileged user,
Redis and Sentinel, all from a rehearsal render."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import IN_CI, require
from halgen import compiler, schema
from halgen.model import Node, Stack, derive
from halgen.rehearsal import install_nodes
from halgen.render import build, render

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

    def node(self, name: str) -> Node:
        return next(n for n in self.stack.nodes if n.name == name)

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
    """Render ``overrides`` for a rehearsal under a fresh, world-traversable base dir."""
    base = Path(tempfile.mkdtemp(prefix="halgen-rt-"))
    base.chmod(0o755)
    target = compiler.rehearsal_target(base / "n", LOOPBACK)
    answers = compiler.complete_answers(__import__("halgen.answers", fromlist=["x"]).from_mapping(overrides))
    repo = base / "repo"
    render(answers, repo, target=target)
    build(repo, answers, target)
    stack = derive(answers, target)
    install_nodes(repo, stack)
    return LoopbackStack(base=base, repo=repo, stack=stack)


def defaults_with(**overrides: object) -> dict:
    return {**schema.defaults(), **overrides}


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def cleanup(ls: LoopbackStack) -> None:
    ls.stop_all()
    shutil.rmtree(ls.base, ignore_errors=True)
