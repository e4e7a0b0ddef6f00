"""Render a stack for one machine and lay each node's files out under a temporary base
directory: ``base/repo`` is the rehearsal render, ``base/n/<node>`` each node's root,
``base/logs`` the programs' output."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from halgen.compiler import pipeline, secrets
from halgen.compiler.answers import Answers
from halgen.compiler.model import Node, Stack, derive
from halgen.compiler.write import build, render
from halgen.errors import HalgenError
from halgen.host.processes import Processes


class RehearsalError(HalgenError):
    """Something the rehearsal needed did not happen; the message says what."""


@dataclass
class LoopbackStack:
    """A rehearsal render laid out under ``base`` and the programs started from it."""

    base: Path
    repo: Path
    stack: Stack
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.base / "logs")

    def node(self, name: str) -> Node:
        return next(n for n in self.stack.nodes if n.name == name)

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> subprocess.Popen:
        return self.processes.spawn(argv, name, env=env, cwd=cwd)

    @property
    def procs(self) -> list[subprocess.Popen]:
        return self.processes.procs

    def stop_all(self) -> None:
        self.processes.stop_all()


S = TypeVar("S", bound=LoopbackStack)


def make_base(prefix: str) -> Path:
    """A fresh directory under /tmp that the postgres user can traverse."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    return base


def lay_out(answers: Answers, base: Path, loopback_subnet: str, kind: type[S],
            provided_secrets: dict[str, str] | None = None) -> S:
    """Render complete answers for a rehearsal under ``base``, build the secret files
    (with the secrets the user would provide, if given) and install every node."""
    target = pipeline.rehearsal_target(base / "n", loopback_subnet)
    repo = base / "repo"
    render(answers, repo, target=target)
    if provided_secrets:
        secrets.write(repo, {**secrets.read(repo), **provided_secrets})
    build(repo, answers, target)
    stack = derive(answers, target)
    install_nodes(repo, stack)
    return kind(base=base, repo=repo, stack=stack)


def install_nodes(repo: Path, stack: Stack) -> None:
    """Copy repo/nodes/<node> and repo/build/nodes/<node> to each node's root, and
    make the directories the services write to."""
    if not stack.target.is_rehearsal:
        raise ValueError("install_nodes lays files out for a rehearsal only")
    for node in stack.nodes:
        root = Path(node.paths.root)
        for source in (repo / "nodes" / node.name, repo / "build" / "nodes" / node.name):
            if source.is_dir():
                shutil.copytree(source, root, dirs_exist_ok=True)
        p = node.paths
        for directory in (p.pg_run_dir, p.pg_log_dir, p.redis_data, p.redis_run_dir, p.run_dir, p.nginx_log_dir,
                          p.pgbackrest_log_dir, p.pgbackrest_lock_dir, p.log_dir, p.lock_dir, p.scratch_dir,
                          str(Path(p.ca_file).parent)):
            Path(directory).mkdir(parents=True, exist_ok=True)
