"""Helpers to run generated configs on loopback: remap node paths and addresses.

Only loopback addresses (127.x.y.z) are ever used.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

NODE_PATHS = ("/var/log/nginx", "/run/nginx.pid", "/etc/letsencrypt")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def self_signed(cert_dir: Path, domain: str) -> None:
    live = cert_dir / "live" / domain
    live.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={domain}", "-keyout", str(live / "privkey.pem"),
                    "-out", str(live / "fullchain.pem")], check=True, capture_output=True)


def nginx_on_prefix(conf: str, prefix: Path, listen: str | None = None,
                    address_map: dict[str, str] | None = None) -> Path:
    """Rewrite a generated nginx.conf so it runs under ``prefix`` (and on ``listen``)."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = conf.replace("/var/log/nginx", str(prefix / "logs"))
    conf = conf.replace("/run/nginx.pid", str(prefix / "nginx.pid"))
    conf = conf.replace("/etc/letsencrypt", str(prefix / "letsencrypt"))
    for old, new in (address_map or {}).items():
        conf = conf.replace(f"server {old}:", f"server {new}:")
    if listen:
        conf = re.sub(r"^\s*listen \[::\]:.*\n", "", conf, flags=re.M)
        conf = re.sub(r"listen 80( default_server)?;", lambda m: f"listen {listen}{m.group(1) or ''};", conf)
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def exec_start(unit_text: str) -> list[str]:
    (line,) = [ln for ln in unit_text.splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))
