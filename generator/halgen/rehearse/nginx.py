"""Run a load balancer's nginx.conf on one machine.

A node's nginx listens on every address (``listen 80`` and ``listen [::]:80``); on one
machine every load balancer would take the same sockets, and the rehearsal must
use its loopback addresses only. So nginx runs from a copy in which each ``listen``
is bound to the node's own loopback address (and port, see ``lb_ports``) and the
IPv6 wildcard ``listen`` lines are dropped. Nothing else in the file changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from halgen.host.processes import can_bind

HTTP, HTTPS = 80, 443
MIME_TYPES = Path("/etc/nginx/mime.types")


def bind_listens(conf: str, address: str, ports: dict[int, int]) -> str:
    """``listen PORT ...;`` -> ``listen ADDRESS:NEWPORT ...;`` for each port in ``ports``;
    ``listen [::]:...`` lines are dropped."""
    conf = re.sub(r"^[ \t]*listen \[::\]:.*\n", "", conf, flags=re.M)
    return re.sub(r"\blisten (\d+)(?=[\s;])", lambda m: f"listen {address}:{ports.get(int(m[1]), int(m[1]))}", conf)


def lb_ports(addresses: list[str]) -> dict[int, int]:
    """80 and 443 where this user may bind them on every load balancer address (root,
    or a lowered net.ipv4.ip_unprivileged_port_start); 8080 and 8443 otherwise."""
    if all(can_bind(address, port) for address in addresses for port in (HTTP, HTTPS)):
        return {HTTP: HTTP, HTTPS: HTTPS}
    return {HTTP: 8080, HTTPS: 8443}


def install_package_files(node_root: Path) -> None:
    """What the nginx package puts on a node that the generated config includes."""
    target = node_root / "etc" / "nginx" / "mime.types"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MIME_TYPES, target)


def nginx_argv(conf: Path, error_log: Path, *extra: str) -> list[str]:
    # -e: the error log nginx uses before it has read the config (else /var/log/nginx).
    return ["nginx", "-c", str(conf), "-e", str(error_log), *extra]


def foreground(conf: Path, error_log: Path) -> list[str]:
    return nginx_argv(conf, error_log, "-g", "daemon off;")


def check_config(conf: Path, error_log: Path) -> str | None:
    """nginx -t on the file: None when it is accepted, else nginx's complaint."""
    out = subprocess.run(nginx_argv(conf, error_log, "-t", "-q"), capture_output=True, text=True, timeout=30)
    return None if out.returncode == 0 else (out.stderr.strip() or out.stdout.strip())
