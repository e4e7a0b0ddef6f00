"""The generated sshd drop-in on a real sshd: ssh-audit finds no failure, and the
settings sshd ends up with forbid forwarding and probe dead clients.

sshd runs as a subprocess on a loopback address with its own host keys in a temp
dir, the drop-in included first as Debian's sshd_config does."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from halgen.host.processes import free_port, wait_for_port

from conftest import GOLDEN, require

pytestmark = pytest.mark.realserver

ADDRESS = "127.20.0.60"
DROP_IN = GOLDEN / "default-ha/expected/nodes/db1/etc/ssh/sshd_config.d/50-shop.conf"
# What Debian 12's ssh-audit (2.5.0, older than OpenSSH 9.2) warns about; each is a strength.
ACCEPTED_WARNINGS = {
    # OpenSSH's default post-quantum hybrid key exchange since 9.0
    ("sntrup761x25519-sha512@openssh.com", "using experimental algorithm"),
    # the marker of OpenSSH's strict key exchange, the Terrapin (CVE-2023-48795) countermeasure
    ("kex-strict-s-v00@openssh.com", "unknown algorithm"),
}


def _config(tmp_path: Path, port: int) -> Path:
    """An sshd_config like Debian's (drop-ins first) with the generated drop-in, its
    host keys made here: ed25519, and RSA and ECDSA as Debian's package makes them
    (the drop-in must not load ECDSA, which first boot deletes)."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for kind, bits in (("ed25519", []), ("rsa", ["-b", "3072"]), ("ecdsa", ["-b", "256"])):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-f", str(keys / f"ssh_host_{kind}_key")],
                       check=True)
    drop_ins = tmp_path / "sshd_config.d"
    drop_ins.mkdir()
    (drop_ins / DROP_IN.name).write_text(DROP_IN.read_text().replace("/etc/ssh/", f"{keys}/"))
    config = tmp_path / "sshd_config"
    config.write_text(f"Include {drop_ins}/*.conf\nPort {port}\nListenAddress {ADDRESS}\n"
                      f"PidFile {tmp_path / 'sshd.pid'}\nUsePAM no\n")
    return config


def _sshd() -> str:
    require("sshd", "ssh-keygen", "ssh-audit")
    sshd = shutil.which("sshd")
    assert sshd is not None
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation directory
    return sshd


@pytest.fixture
def sshd_port(tmp_path: Path) -> Iterator[int]:
    sshd = _sshd()
    port = free_port(ADDRESS)
    config = _config(tmp_path, port)
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(ADDRESS, port)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def test_ssh_audit_finds_no_failure(sshd_port: int) -> None:
    audit = subprocess.run(["ssh-audit", "--no-colors", "--timeout=10", f"{ADDRESS}:{sshd_port}"],
                           capture_output=True, text=True, timeout=60)
    report = audit.stdout
    assert "(gen) software: OpenSSH" in report, report + audit.stderr
    assert "[fail]" not in report, report
    warnings = re.findall(r"^\(\w+\) (\S+)(?: \([^)]*\))?\s+-- \[warn\] (.*)$", report, flags=re.M)
    assert len(warnings) == report.count("[warn]") and set(warnings) <= ACCEPTED_WARNINGS, report
    assert audit.returncode in {0, 2}, report  # good, or warnings only (3 is a failure)
    offered_keys = set(re.findall(r"^\(key\) (\S+)", report, flags=re.M))
    assert offered_keys == {"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"}


def test_effective_settings_forbid_forwarding(tmp_path: Path) -> None:
    sshd = _sshd()
    config = _config(tmp_path, free_port(ADDRESS))
    admin = re.search(r"^AllowUsers (\S+)", DROP_IN.read_text(), flags=re.M)
    assert admin is not None
    # sshd -T prints what a connection from this user and address would get, Match blocks applied.
    connection = f"user={admin.group(1)},host=admin.example,addr=203.0.113.9"
    out = subprocess.run([sshd, "-T", "-f", str(config), "-C", connection], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    settings = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    for key, value in {"allowtcpforwarding": "no", "allowstreamlocalforwarding": "no", "x11forwarding": "no",
                       "allowagentforwarding": "no", "permittunnel": "no", "gatewayports": "no",
                       "permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
                       "clientaliveinterval": "300", "clientalivecountmax": "3"}.items():
        assert settings.get(key) == value, (key, settings.get(key))
    algorithms = ",".join(settings[k] for k in ("kexalgorithms", "hostkeyalgorithms", "ciphers", "macs"))
    assert not re.search(r"nistp|ecdsa|sha1|ssh-rsa|cbc|hmac-md5|group14|group1-|group-exchange", algorithms), algorithms
    assert "ssh-rsa" not in settings["pubkeyacceptedalgorithms"].split(","), "an admin's RSA key signs with SHA-2"
