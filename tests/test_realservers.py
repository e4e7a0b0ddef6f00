"""Real programs on generated output: nginx -t, shellcheck, Starlet behind nginx and HAProxy on loopback.

These skip on a laptop that lacks the programs, and fail in CI (CI=true) instead.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import GOLDEN, golden_cases, require
from realserver import (
    app_listen,
    app_relisten,
    exec_start,
    free_port,
    haproxy_serving,
    nginx_on_prefix,
    nginx_serving,
    placeholder_certificate,
    wait_for_port,
)

pytestmark = pytest.mark.realserver


@pytest.mark.parametrize("case", golden_cases())
def test_nginx_accepts_every_golden_config(case: str, tmp_path: Path) -> None:
    require("nginx", "openssl")
    confs = sorted((GOLDEN / case / "expected").glob("nodes/*/etc/nginx/nginx.conf"))
    assert confs
    for conf in confs:
        prefix = tmp_path / conf.parent.parent.parent.name
        text = conf.read_text()
        if "ssl_certificate" in text:
            placeholder_certificate(prefix, "example.com")
        path = nginx_on_prefix(text, prefix)
        result = subprocess.run(["nginx", "-t", "-q", "-c", str(path), "-p", str(prefix)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{conf}: {result.stderr}"


@pytest.mark.parametrize("case", golden_cases())
def test_shell_scripts_pass_shellcheck(case: str) -> None:
    require("shellcheck")
    root = GOLDEN / case / "expected"
    scripts = sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes().startswith(b"#!/usr/bin/env bash"))
    assert len(scripts) >= 3
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


FAKE_SSH = """#!/usr/bin/env bash
# Stands in for ssh: logs 'target command' and fails curl health checks on $FAIL_ADDR.
shift 2
target="$1"; shift
echo "$target $*" >> "$SSH_LOG"
cat > /dev/null  # like ssh, take what is piped in (the release tarball), or the sender dies of SIGPIPE
if [[ "$1" == curl && -n "${FAIL_ADDR:-}" && "$target" == *"@$FAIL_ADDR" ]]; then exit 22; fi
exit 0
"""


def _run_deploy(tmp_path: Path, fail_addr: str = "",
                case: str = "default-ha") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    require("bash")
    fake = tmp_path / "fake-ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "ssh.log"
    env = {**os.environ, "DEPLOY_SSH": str(fake), "SSH_LOG": str(log), "FAIL_ADDR": fail_addr,
           "HEALTH_TRIES": "2", "HEALTH_DELAY": "0"}
    script = GOLDEN / case / "expected" / "scripts" / "rolling-deploy.sh"
    result = subprocess.run(["bash", str(script), "v1.2"], env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    return result, log.read_text().splitlines() if log.exists() else []


def test_rolling_deploy_goes_one_server_at_a_time(tmp_path: Path) -> None:
    result, calls = _run_deploy(tmp_path)
    assert result.returncode == 0, result.stderr
    order = [c.split()[0].split("@")[1] for c in calls if "systemctl reload" in c]
    assert order == ["10.0.0.40", "10.0.0.41", "10.0.0.42"]
    # each reload is followed by that node's health check before the next node is touched
    reload_at = [i for i, c in enumerate(calls) if "systemctl reload" in c]
    health_at = [i for i, c in enumerate(calls) if " curl " in f" {c.split(' ', 1)[1]}"]
    assert all(r < h < r2 for r, h, r2 in zip(reload_at, health_at, reload_at[1:] + [len(calls)], strict=True))


def test_rolling_deploy_stops_on_first_failure(tmp_path: Path) -> None:
    result, calls = _run_deploy(tmp_path, fail_addr="10.0.0.41")
    assert result.returncode == 1
    assert "app2" in result.stderr and "stopping the rollout" in result.stderr
    assert not [c for c in calls if "10.0.0.42" in c], "app3 must not be touched after app2 failed"


def test_rolling_deploy_clones_an_ssh_repo_with_the_deploy_key(tmp_path: Path) -> None:
    result, calls = _run_deploy(tmp_path, case="tls-sync")
    assert result.returncode == 0, result.stderr
    clones = [c for c in calls if " git clone " in c]
    assert len(clones) == 3
    # What the node's shell gets (ssh joins the words): the SSH command stays one word.
    words = shlex.split(clones[0].split(" ", 1)[1])
    config = words[words.index("--config") + 1]
    assert config == ("core.sshCommand=ssh -i /etc/bank/deploy-key -o IdentitiesOnly=yes -o BatchMode=yes "
                      "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/bank/git-known-hosts")
    assert words[words.index(config) + 1] == "git@git.example.com:bank/webapp.git"


def test_rolling_deploy_rejects_hostile_ref(tmp_path: Path) -> None:
    script = GOLDEN / "default-ha" / "expected" / "scripts" / "rolling-deploy.sh"
    result = subprocess.run(["bash", str(script), "--dry-run", "main;reboot"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid ref" in result.stderr


def _get(url: str, host: str, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_app_servers_behind_generated_nginx_survive_a_dead_instance(tmp_path: Path) -> None:
    require("nginx", "haproxy", "start_server", "plackup")
    expected = GOLDEN / "default-ha" / "expected"
    psgi = expected / "app" / "app.psgi"
    app_nodes = sorted((expected / "nodes").glob("app*"))
    address_map, app_servers = {}, []
    try:
        for i, node in enumerate(app_nodes):
            (unit,) = node.glob("etc/systemd/system/*-app-*.service")
            argv = exec_start(unit.read_text())
            listen = app_listen(argv)
            loop_addr = f"127.20.0.{40 + i}"
            port = free_port(loop_addr)
            address_map[listen.rsplit(":", 1)[0]] = loop_addr
            # the unit's port is remapped too: one free port per instance
            argv = app_relisten(argv, f"{loop_addr}:{port}", psgi)
            app_servers.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              start_new_session=True), loop_addr, port, listen))
        for _, addr, port, _ in app_servers:
            wait_for_port(addr, port)

        # nginx (the edge) -> HAProxy on the same node -> the Starlet instances, as generated.
        balancer = (expected / "nodes" / "lb1" / "etc" / "haproxy" / "haproxy.cfg").read_text()
        for _, addr, port, listen in app_servers:
            balancer = balancer.replace(f" {listen} ", f" {addr}:{port} ")
        conf = (expected / "nodes" / "lb1" / "etc" / "nginx" / "nginx.conf").read_text()
        with haproxy_serving(balancer, tmp_path / "haproxy", "127.20.0.10") as balancer_listen, \
                nginx_serving(conf.replace("server 127.0.0.1:8404 ", f"server {balancer_listen} "),
                              tmp_path / "lb1", "127.20.0.10") as lb_port:
            base = f"http://127.20.0.10:{lb_port}"
            status, body = _get(f"{base}/", "shop.example.com")
            assert status == 200 and body.startswith("Hello from")
            # no data tier runs in this test: the app says so instead of pretending
            assert _get(f"{base}/healthz", "shop.example.com")[0] == 503
            assert _get(f"{base}/nginx-health", "anything.invalid") == (200, "OK\n")
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                _get(f"{base}/", "not-ours.example")  # default server closes the connection (444)

            pids = {_get(f"{base}/", "shop.example.com")[1].split("pid ")[1] for _ in range(30)}
            assert len(pids) >= 2, "requests are spread over instances"

            victim = app_servers[0][0]
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(5)
            started = time.monotonic()
            results = [_get(f"{base}/", "shop.example.com")[0] for _ in range(50)]
            assert results == [200] * 50, "a dead instance must not fail idempotent requests"
            assert time.monotonic() - started < 20
    finally:
        for proc, *_ in app_servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)


def test_rate_limit_answers_429_to_one_address_but_not_to_the_vpc_or_the_host(tmp_path: Path) -> None:
    """100 r/s with a burst of 200 (the defaults) per client address: 400 requests at once
    from an internet address get 429s; the same from the load balancer itself get none."""
    require("nginx")
    conf = (GOLDEN / "default-ha" / "expected" / "nodes" / "lb1" / "etc" / "nginx" / "nginx.conf").read_text()
    assert "rate=100r/s" in conf and "burst=200" in conf
    with nginx_serving(conf, tmp_path / "lb1", "127.20.0.10") as lb_port:

        def statuses(source: str) -> list[int]:
            conn = http.client.HTTPConnection("127.20.0.10", lb_port, timeout=5, source_address=(source, 0))
            seen = []
            for _ in range(400):  # no app behind this nginx: 502 when not limited
                conn.request("GET", "/", headers={"Host": "shop.example.com"})
                response = conn.getresponse()
                response.read()
                seen.append(response.status)
            conn.close()
            return seen

        internet = statuses("127.20.0.77")
        assert internet.count(429) >= 100, f"{internet.count(429)} of 400 limited"
        assert 429 not in statuses("127.0.0.1"), "the host itself is never limited"


class _Backend(ThreadingHTTPServer):
    """A stand-in app instance that counts requests by method; ``hang`` makes it take
    every request but /livez and never answer (a stopped Starman worker, as a client sees it)."""

    daemon_threads = True

    def __init__(self, address: str, hang: bool) -> None:
        self.hang, self.seen = hang, []
        self.release = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if self.path != "/livez":
                    backend.seen.append(self.command)
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    if backend.hang:
                        backend.release.wait(30)
                        return
                body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((address, free_port(address)), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def listen(self) -> str:
        return f"{self.server_address[0]}:{self.server_address[1]}"


def test_generated_haproxy_retries_a_get_elsewhere_and_never_repeats_a_post(tmp_path: Path) -> None:
    """Against the golden haproxy.cfg (read timeout cut to 1 s): a request the hung
    instance took gets a 504 if it is a POST, which nobody else ever sees, and is answered
    by the other instance if it is a GET."""
    require("haproxy")
    conf = (GOLDEN / "default-ha" / "expected" / "nodes" / "lb1" / "etc" / "haproxy" / "haproxy.cfg").read_text()
    hung, healthy = _Backend("127.20.0.50", hang=True), _Backend("127.20.0.51", hang=False)
    try:
        servers = re.compile(r"^    server .*\n", re.M)
        first = servers.search(conf)
        assert first is not None
        # 'balance first' sends every first try to the hung one (listed first, slots free);
        # what happens after, the retries, is the generated config's.
        conf = (conf[:first.start()] + f"    server hung {hung.listen}\n    server healthy {healthy.listen}\n"
                + servers.sub("", conf[first.start():]))
        conf = conf.replace("timeout server 30s", "timeout server 1s").replace("balance leastconn", "balance first")
        with haproxy_serving(conf, tmp_path / "haproxy", "127.20.0.10") as listen:
            address, port = listen.rsplit(":", 1)
            connection = http.client.HTTPConnection(address, int(port), timeout=10)
            connection.request("POST", "/items", body=b"once", headers={"Host": "shop.example.com"})
            assert connection.getresponse().status == 504
            assert (hung.seen, healthy.seen) == (["POST"], []), "a POST is never sent twice"
            connection = http.client.HTTPConnection(address, int(port), timeout=10)
            connection.request("GET", "/items/1", headers={"Host": "shop.example.com"})
            assert connection.getresponse().status == 200
            assert (hung.seen, healthy.seen) == (["POST", "GET"], ["GET"]), "the GET was answered elsewhere"
    finally:
        for backend in (hung, healthy):
            backend.release.set()
            backend.shutdown()


def test_starlet_reload_serves_new_code_and_refuses_no_request(tmp_path: Path) -> None:
    """systemctl reload (HUP to start_server) as the generated unit runs it: the release
    'current' points to after the switch answers, and no request fails meanwhile."""
    require("start_server", "plackup")
    for release in ("r1", "r2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "app.psgi").write_text(f"sub {{ [200, ['Content-Type' => 'text/plain'], ['{release}']] }};\n")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "r1")
    unit = GOLDEN / "default-ha" / "expected" / "nodes" / "app1" / "etc" / "systemd" / "system" / "shop-app-5000.service"
    port = free_port("127.20.0.45")
    argv = [arg.replace("/srv/shop/current", str(current))
            for arg in app_relisten(exec_start(unit.read_text()), f"127.20.0.45:{port}", current / "app.psgi")]
    argv.insert(1, f"--dir={current}")  # app_relisten drops the node's --dir
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    failures: list[str] = []
    bodies: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                bodies.append(_get(f"http://127.20.0.45:{port}/", "x")[1])
            except OSError as err:
                failures.append(str(err))

    try:
        wait_for_port("127.20.0.45", port)
        client = threading.Thread(target=load)
        client.start()
        time.sleep(0.5)
        current.unlink()
        current.symlink_to(tmp_path / "r2")
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not bodies or bodies[-1] != "r2"):
            time.sleep(0.1)
        time.sleep(2)  # the old generation finishes and exits
        stop.set()
        client.join(10)
        assert bodies and bodies[-1] == "r2", "the new release answers after the reload"
        assert "r1" in bodies and not failures, failures[:3]
        assert bodies[-20:] == ["r2"] * 20, "the old generation is gone"
    finally:
        stop.set()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
