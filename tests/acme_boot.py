"""Run inside a network namespace of its own (see test_tls_acme.py): a load balancer's
first boot against pebble, then a forced renewal, reported as JSON on stdout.

The namespace lets the generated nginx.conf run unchanged (``listen 80`` on every
address) and keeps every packet on its own loopback. ``systemctl`` is the only stand-in:
a shim that does what systemd would do for nginx (start it, or reload it).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from halgen.host.acme import start_pebble
from halgen.host.processes import Processes, wait_until

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SYSTEMCTL_SHIM = """#!/bin/bash
# systemd's part for nginx, and nothing else.
case "$*" in
    "enable nginx") ;;
    "reload-or-restart nginx")
        if [[ -s {pid} ]] && kill -0 "$(cat {pid})" 2>/dev/null; then nginx -s reload -c {conf}
        else nginx -c {conf}; fi ;;
    *) echo "systemctl shim: unexpected: $*" >&2; exit 1 ;;
esac
"""


def served_certificate(address: str, name: str, ca_file: str) -> dict[str, Any]:
    """The certificate nginx presents for ``name``, verified against ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection((address, 443), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        return {"serial": tls.getpeercert()["serialNumber"], "issuer": dict(x[0] for x in tls.getpeercert()["issuer"])}


def steadily_served(address: str, name: str, ca_file: str, times: int = 5) -> dict[str, Any]:
    """The certificate when ``times`` handshakes in a row verify (else an error: not yet)."""
    certificates = [served_certificate(address, name, ca_file) for _ in range(times)]
    return certificates[-1]


def handshake_refused(address: str, name: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((address, 443), timeout=5) as raw, context.wrap_socket(raw, server_hostname=name):
            return ""
    except ssl.SSLError as err:
        return err.reason or str(err)


def http_get(address: str, port: int, host: str, path: str, ca_file: str | None = None,
             name: str | None = None) -> tuple[int, dict[str, str]]:
    import http.client
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(address, port, timeout=5, context=context)
        conn.sock = context.wrap_socket(socket.create_connection((address, port), timeout=5),
                                        server_hostname=name or host)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    except (ConnectionError, http.client.RemoteDisconnected):
        return 0, {}
    finally:
        conn.close()


def main(spec: dict[str, Any]) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    base, address, domain = Path(spec["base"]), spec["lb_address"], spec["domain"]
    conf, pid = spec["nginx_conf"], spec["nginx_pid"]
    shims = base / "shims"
    shims.mkdir(exist_ok=True)
    (shims / "systemctl").write_text(SYSTEMCTL_SHIM.format(pid=pid, conf=conf))
    (shims / "systemctl").chmod(0o755)
    processes = Processes(base / "acme-logs")
    result: dict[str, Any] = {}
    try:
        if spec.get("acme_down"):  # no ACME server answers: nginx must serve anyway, and the exit say so
            env = {"PATH": f"{shims}:{SYSTEMD_PATH}", "HOME": str(base)}
            boot = subprocess.run(["bash", spec["tls_script"], "boot"], env=env, capture_output=True, text=True,
                                  timeout=180)
            result["boot"] = {"rc": boot.returncode, "output": (boot.stdout + boot.stderr)[-3000:]}
            result["health"] = http_get(address, 80, domain, spec["health_path"])
            return result
        acme = start_pebble(processes, base / "acme", spec["acme_address"], 80, resolve_to=address)
        env = {"PATH": f"{shims}:{SYSTEMD_PATH}", "HOME": str(base), **acme.client_env()}
        boot = subprocess.run(["bash", spec["tls_script"], "boot"], env=env, capture_output=True, text=True,
                              timeout=180)
        result["boot"] = {"rc": boot.returncode, "output": (boot.stdout + boot.stderr)[-3000:]}
        if boot.returncode != 0 or "serving" not in boot.stdout:  # no certificate: nothing more to check
            return result
        root = base / "acme" / "issuing-root.pem"
        root.write_text(acme.issuing_root())
        # A reload is asynchronous: old workers may still accept a connection and show the
        # throwaway certificate until they exit, so wait until several in a row verify.
        result["first"] = wait_until(lambda: steadily_served(address, domain, str(root)), 30,
                                     "the issued certificate on every connection")
        result["pid_before"] = Path(pid).read_text().strip()
        result["redirect"] = http_get(address, 80, domain, "/x?y=1")
        result["health"] = http_get(address, 443, domain, spec["health_path"], str(root))
        result["other_host"] = http_get(address, 443, "evil.test", "/", str(root), name=domain)
        result["other_name"] = handshake_refused(address, "evil.test")
        renew = subprocess.run(["certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew",
                                "--config-dir", spec["config_dir"], "--work-dir", spec["work_dir"],
                                "--logs-dir", spec["logs_dir"]], env=env, capture_output=True, text=True, timeout=180)
        result["renew"] = {"rc": renew.returncode, "output": (renew.stdout + renew.stderr)[-3000:]}
        result["second"] = wait_until(
            lambda: (c := steadily_served(address, domain, str(root)))["serial"] != result["first"]["serial"] and c,
            30, "the renewed certificate")
        result["pid_after"] = Path(pid).read_text().strip()
        return result
    finally:
        subprocess.run(["nginx", "-s", "stop", "-c", conf], capture_output=True)
        processes.stop_all()


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
