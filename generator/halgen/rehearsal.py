"""Run a rendered stack on one machine: lay each node's files under its prefix.

Issue-sized for now: the full ``halgen rehearse`` (start, drill, stop) builds on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .model import Stack


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
