"""Render a stack for one machine and lay each node's files out under a temporary base
directory: ``base/repo`` is the rehearsal render, ``base/n/<node>`` each node's root,
``base/logs`` the programs' output."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import compiler, secrets
from ..model import Node, Stack, derive
from ..rehearsal import install_nodes
from ..render import build, render
from .processes import Processes


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


def lay_out(answers: dict[str, Any], base: Path, loopback_subnet: str, kind: type[S],
            provided_secrets: dict[str, str] | None = None) -> S:
    """Render complete answers for a rehearsal under ``base``, build the secret files
    (with the secrets the user would provide, if given) and install every node."""
    target = compiler.rehearsal_target(base / "n", loopback_subnet)
    repo = base / "repo"
    render(answers, repo, target=target)
    if provided_secrets:
        secrets.write(repo, {**secrets.read(repo), **provided_secrets})
    build(repo, answers, target)
    stack = derive(answers, target)
    install_nodes(repo, stack)
    return kind(base=base, repo=repo, stack=stack)
