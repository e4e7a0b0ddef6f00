"""Throwaway TLS certificates for checks and rehearsals on this machine."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(cert_dir: Path, domain: str) -> None:
    """A throwaway certificate where certbot would put the real one."""
    live = cert_dir / "live" / domain
    live.mkdir(parents=True, exist_ok=True)
    key_pair(live / "fullchain.pem", live / "privkey.pem", domain)


def key_pair(cert: Path, key: Path, name: str, address: str | None = None, names: tuple[str, ...] = ()) -> None:
    """A throwaway self-signed certificate and its key (mode 0600), valid one day; with
    ``address``, also for that IP address (a local server reached by its address), and
    for the DNS ``names``."""
    alt = [f"IP:{address}"] * bool(address) + [f"DNS:{n}" for n in names]
    san = ["-addext", f"subjectAltName={','.join(alt)}"] if alt else []
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", *san, "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True)


def self_signed_for_address(directory: Path, address: str) -> tuple[Path, Path]:
    """A throwaway certificate for a local server reached by its IP address."""
    cert, key = directory / "server.pem", directory / "server.key"
    key_pair(cert, key, address, address)
    return cert, key
