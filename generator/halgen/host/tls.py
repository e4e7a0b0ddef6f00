"""Throwaway TLS certificates for checks and rehearsals on this machine."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(cert_dir: Path, domain: str) -> None:
    """A throwaway certificate where certbot would put the real one."""
    live = cert_dir / "live" / domain
    live.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={domain}", "-keyout", str(live / "privkey.pem"),
                    "-out", str(live / "fullchain.pem")], check=True, capture_output=True)
