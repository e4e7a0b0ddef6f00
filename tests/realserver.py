"""Helpers to run generated configs on loopback: remap node paths and addresses.

Only loopback addresses (127.x.y.z) are ever used.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from halgen.formats import haproxy
from halgen.host.processes import free_port, wait_for_port  # noqa: F401
from halgen.host.tls import self_signed  # noqa: F401  (re-exported for the tests)
from halgen.lint.facts import app_command
from halgen.rehearse.nginx import bind_listens  # noqa: F401  (re-exported for the tests)
from halgen.rehearse.units import parse_unit

NODE_PATHS = ("/var/log/nginx", "/run/nginx.pid", "/etc/letsencrypt", "/etc/nginx/tls")


def nginx_on_prefix(conf: str, prefix: Path, listen: str | None = None,
                    address_map: dict[str, str] | None = None) -> Path:
    """Rewrite a generated nginx.conf so it runs under ``prefix`` (and on ``listen``)."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = conf.replace("/var/log/nginx", str(prefix / "logs"))
    conf = conf.replace("/run/nginx.pid", str(prefix / "nginx.pid"))
    conf = conf.replace("/etc/letsencrypt", str(prefix / "letsencrypt"))
    conf = conf.replace("/etc/nginx/tls", str(prefix / "tls"))
    for old, new in (address_map or {}).items():
        conf = conf.replace(f"server {old}:", f"server {new}:")
    if listen:
        address, port = listen.rsplit(":", 1)
        conf = bind_listens(conf, address, {80: int(port)})
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path


def exec_start(unit_text: str) -> list[str]:
    return parse_unit(unit_text).argv


def app_listen(argv: list[str]) -> str:
    """The ADDRESS:PORT an app server unit's command listens on, read as lint reads it."""
    command = app_command("", 0, argv)
    assert command is not None and command.listens, f"no app server listen address in {argv}"
    return command.listens[0]


def app_relisten(argv: list[str], listen: str, psgi: Path) -> list[str]:
    """The command with another listen address and PSGI file (the last argument), and
    Server::Starter's --dir (a node path) left out."""
    old = app_listen(argv)
    moved = [listen if arg == old else f"--port={listen}" if arg == f"--port={old}" else arg
             for arg in argv if not arg.startswith("--dir=")]
    return [*moved[:-1], str(psgi)]


def placeholder_certificate(prefix: Path, domain: str) -> None:
    """A throwaway certificate where a load balancer's nginx.conf reads its current one."""
    self_signed(prefix / "tls-source", domain)
    (prefix / "tls").mkdir(parents=True, exist_ok=True)
    (prefix / "tls" / "current").symlink_to(prefix / "tls-source" / "live" / domain)


@contextmanager
def nginx_serving(conf: str, prefix: Path, address: str) -> Iterator[int]:
    """A generated nginx.conf running under ``prefix`` on ``address`` and a free port (yielded)."""
    port = free_port(address)
    path = nginx_on_prefix(conf, prefix, listen=f"{address}:{port}")
    nginx = subprocess.Popen(["nginx", "-c", str(path), "-p", str(prefix), "-g", "daemon off;"],
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port(address, port)
        yield port
    finally:
        os.killpg(nginx.pid, signal.SIGTERM)
        nginx.wait(10)


@contextmanager
def haproxy_serving(conf: str, directory: Path, address: str) -> Iterator[str]:
    """A generated haproxy.cfg running from ``directory``, its frontend moved to ``address``
    and a free port (yielded as ADDRESS:PORT). Its chroot and user lines need root and the
    haproxy user: they are left out; its stats socket moves to ``directory``."""
    port = free_port(address)
    directory.mkdir(parents=True, exist_ok=True)
    conf = haproxy.with_stats_socket(haproxy.unprivileged(conf), f"{directory}/admin.sock")
    conf = re.sub(r"^([ \t]*bind )\S+", rf"\g<1>{address}:{port}", conf, flags=re.M)
    path = directory / "haproxy.cfg"
    path.write_text(conf)
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port(address, port)
        yield f"{address}:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
