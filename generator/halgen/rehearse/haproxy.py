"""Run a load balancer's haproxy.cfg on one machine, and read its view of the app servers.

The generated file binds HAProxy to the node's own loopback address in a rehearsal
already (Target.local_address), and its chroot and stats socket live under the
node's root. What a node's package and systemd provide is provided here: the chroot
and run directories. Only as root may HAProxy chroot and switch to the haproxy
user; run as anyone else, those three lines are left out of the runtime copy.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from halgen.compiler.model import Node
from halgen.formats import haproxy as haproxy_format


def config_path(node: Node) -> Path:
    return Path(node.paths.root) / "etc" / "haproxy" / "haproxy.cfg"


def stats_socket(node: Node) -> Path:
    return Path(node.paths.run_dir) / "haproxy" / "admin.sock"


def runtime_config(node: Node, runtime: Path) -> Path:
    """A copy of the node's haproxy.cfg this user can run, with what it needs created."""
    Path(node.paths.haproxy_chroot).mkdir(parents=True, exist_ok=True)
    stats_socket(node).parent.mkdir(parents=True, exist_ok=True)
    text = config_path(node).read_text()
    if os.geteuid() != 0:
        text = haproxy_format.unprivileged(text)
    runtime.parent.mkdir(parents=True, exist_ok=True)
    runtime.write_text(text)
    return runtime


def check_config(conf: Path) -> str | None:
    """haproxy -c on the file: None when it is accepted, else HAProxy's complaint."""
    out = subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    return None if out.returncode == 0 else (out.stderr.strip() or out.stdout.strip())


def foreground(conf: Path) -> list[str]:
    # -db: stay in the foreground, as the rehearsal's process supervisor expects.
    return ["haproxy", "-db", "-f", str(conf)]


@dataclass(frozen=True)
class ServerState:
    name: str  # <node>-<port>, as haproxy.cfg names it
    status: str  # UP, DOWN, "UP 1/2", MAINT, ...
    sent: int  # requests sent to it so far (stot)

    @property
    def up(self) -> bool:
        return self.status == "UP"


def servers(sock: Path) -> dict[str, ServerState]:
    """HAProxy's view of the app servers, from its stats socket ('show stat')."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(2)
        conn.connect(str(sock))
        conn.sendall(b"show stat\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    column = {name: i for i, name in enumerate(header)}
    found = {}
    for line in lines[1:]:
        row = line.split(",")
        if len(row) < len(header) or row[column["svname"]] in ("FRONTEND", "BACKEND"):
            continue
        name = row[column["svname"]]
        found[name] = ServerState(name, row[column["status"]], int(row[column["stot"]] or 0))
    return found


def all_up(sock: Path) -> bool:
    """Every app server UP (False also while HAProxy is starting and has no socket yet)."""
    try:
        states = servers(sock)
    except OSError:
        return False
    return bool(states) and all(s.up for s in states.values())
