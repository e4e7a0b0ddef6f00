"""A TLS load balancer boots, serves and renews against a real ACME server (pebble).

The generated ``<project>-tls boot`` (what first boot runs on a load balancer) runs
unchanged in a network namespace of the test's own: nginx on port 80 with no
certificate but a throwaway one, certbot's HTTP-01 challenge through nginx's webroot,
the switch to the issued certificate; then a forced renewal must be served without a
restart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from halgen.compiler import pipeline
from halgen.compiler.loader import from_mapping
from halgen.rehearse import layout
from halgen.rehearse.nginx import install_package_files

from conftest import IN_CI, require

HERE = Path(__file__).parent


def _require_namespaces() -> None:
    for program in ("nginx", "certbot", "pebble", "pebble-challtestsrv", "openssl", "unshare", "ip"):
        require(program)
    if os.geteuid() != 0:
        message = "needs root for a network namespace (unshare -n)"
        pytest.fail(message) if IN_CI else pytest.skip(message)


def _boot(acme_down: bool = False) -> Iterator[dict]:
    _require_namespaces()
    base = layout.make_base("halgen-acme-")
    try:
        answers = pipeline.complete_answers(from_mapping({"lb_tls": True, "lb_count": 1,
                                                          "domains": ["shop.example.com", "www.shop.example.com"]}))
        ls = layout.lay_out(answers, base, "127.20.0.0/24", layout.LoopbackStack)
        lb = ls.stack.lbs[0]
        p = lb.paths
        install_package_files(Path(p.root))
        spec = {"base": str(base), "lb_address": lb.address, "domain": "shop.example.com",
                "acme_address": ls.stack.target.acme_address, "health_path": answers.lb_health_path,
                "nginx_conf": f"{p.nginx_conf_dir}/nginx.conf", "nginx_pid": f"{p.run_dir}/nginx.pid",
                "tls_script": f"{p.sbin}/{ls.stack.project}-tls", "config_dir": p.letsencrypt_dir,
                "work_dir": p.letsencrypt_work_dir, "logs_dir": p.letsencrypt_log_dir, "acme_down": acme_down}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        out = subprocess.run(["unshare", "--net", sys.executable, str(HERE / "acme_boot.py"), json.dumps(spec)],
                             capture_output=True, text=True, timeout=400, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        result: dict = json.loads(out.stdout.splitlines()[-1])
        result["root"] = p.root
        yield result
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def booted() -> Iterator[dict]:
    yield from _boot()


@pytest.mark.realserver
def test_first_boot_without_a_certificate_serves_and_says_so() -> None:
    """No ACME server answers (names not pointing here yet, say): nginx serves with the
    throwaway certificate and the script exits 3, which the first boot reports to
    cloud-init as a failure instead of a 'done' with no certificate."""
    boot = _boot(acme_down=True)
    try:
        result = next(boot)
    finally:
        boot.close()  # removes its directory
    assert result["boot"]["rc"] == 3, result["boot"]["output"]
    assert "its timer retries every 15 minutes" in result["boot"]["output"]
    assert result["health"][0] in (200, 301), "nginx serves while it waits for the certificate"


def test_first_boot_gets_a_certificate_that_verifies_against_the_acme_ca(booted: dict) -> None:
    assert booted["boot"]["rc"] == 0 and "first" in booted, booted["boot"]["output"]
    assert "Pebble" in " ".join(booted["first"]["issuer"].values())
    status, headers = booted["health"]
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=63072000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "SAMEORIGIN"


def test_http_redirects_to_https_and_other_names_get_nothing(booted: dict) -> None:
    status, headers = booted["redirect"]
    assert status == 301 and headers["location"] == "https://shop.example.com/x?y=1"
    assert booted["other_name"], "a TLS handshake for another name must be refused"
    assert booted["other_host"][0] == 0, "a request for another Host must be closed without an answer"


def test_a_forced_renewal_is_served_without_a_restart(booted: dict) -> None:
    assert booted["renew"]["rc"] == 0, booted["renew"]["output"]
    assert booted["second"]["serial"] != booted["first"]["serial"]
    assert booted["pid_after"] == booted["pid_before"], "nginx was restarted, not reloaded"
