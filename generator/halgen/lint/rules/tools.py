"""The real programs accept the files. Each rule runs when its program is
installed; the runner reports a missing program once (HAL002) instead.

Files are checked as written; only what ties them to a node (addresses, pid and
log paths, certificates, secrets) is pointed at a scratch directory, and a
finding names the repo file and line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from halgen.errors import Problem
from halgen.formats import haproxy
from halgen.host.localpg import as_postgres, pg_bin_dir, pg_superuser
from halgen.host.processes import free_port, wait_until
from halgen.host.tls import key_pair
from halgen.lint import effective
from halgen.lint.registry import rule
from halgen.lint.repo import Repo

_TIMEOUT = 60


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, **kwargs)


@rule("HAL501", "nginx-t", "error", "tools", programs=("nginx", "openssl"))
def nginx_t(repo: Repo) -> Iterator[Problem]:
    """`nginx -t` accepts every nginx.conf.

    nginx itself checks what a parser cannot: argument values, duplicate
    locations, certificate files that load. pid, log and certificate paths
    point to a scratch directory (with a throwaway certificate).
    """
    for rel in repo.nginx_confs():
        with tempfile.TemporaryDirectory(prefix="halgen-lint-") as scratch:
            conf = _nginx_scratch(repo.text(rel), Path(scratch))
            out = _run(["nginx", "-t", "-q", "-c", str(conf), "-p", scratch])
            for line in (out.stderr + out.stdout).splitlines():
                match = re.search(r"\[(emerg|crit|alert)\] (.*?)(?: in (\S+):(\d+))?$", line)
                if match:
                    message = match.group(2).replace(scratch, "…")
                    yield Problem(rel, int(match.group(4)) if match.group(4) else 1, f"nginx -t: {message}")


def _nginx_scratch(text: str, scratch: Path) -> Path:
    """The config with node paths moved under scratch; line numbers stay the same."""
    for directory in ("logs", "run"):
        (scratch / directory).mkdir()
    text = text.replace("/var/log/nginx/", f"{scratch}/logs/").replace("/run/", f"{scratch}/run/")
    text = re.sub(r"^(\s*)user\s+[^;]+;", r"\1# user (dropped for the check)", text, flags=re.M)
    # nginx -t binds every listen socket: each distinct one becomes a free port on
    # 127.0.0.1 (the same one for the same original, so duplicate checks still work).
    ports: dict[str, int] = {}

    def loopback(match: re.Match[str]) -> str:
        original = match.group(2)
        port = ports.setdefault(original, free_port())
        return f"{match.group(1)}127.0.0.1:{port}{match.group(3)}"

    text = re.sub(r"^(\s*listen\s+)(\S+?)([\s;])", loopback, text, flags=re.M)
    # Every certificate (and key) the config names: one throwaway pair.
    pair = scratch / "tls" / "throwaway"
    pair.mkdir(parents=True)
    key_pair(pair / "fullchain.pem", pair / "privkey.pem", "lint.invalid")
    for kind, path in sorted(set(re.findall(r"ssl_(certificate_key|certificate|trusted_certificate)\s+([^;\s]+);",
                                            text))):
        local = scratch / "tls" / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        name = "privkey.pem" if kind == "certificate_key" else "fullchain.pem"
        shutil.copyfile(pair / name, local)
        text = text.replace(f" {path};", f" {local};")
    conf = scratch / "nginx.conf"
    conf.write_text(text)
    return conf


@rule("HAL508", "haproxy-c", "error", "tools", programs=("haproxy",))
def haproxy_c(repo: Repo) -> Iterator[Problem]:
    """`haproxy -c` accepts every haproxy.cfg.

    HAProxy checks what a parser cannot: keywords in the right section, server
    options, time and size values. The user, group and chroot lines (which need
    the node's haproxy user) are left out of the check and the stats socket
    moves to a scratch directory; line numbers stay the same.
    """
    for rel in repo.haproxy_confs():
        with tempfile.TemporaryDirectory(prefix="halgen-lint-") as scratch:
            text = haproxy.with_stats_socket(haproxy.unprivileged(repo.text(rel)), f"{scratch}/admin.sock")
            conf = Path(scratch) / "haproxy.cfg"
            conf.write_text(text)
            out = _run(["haproxy", "-c", "-q", "-f", str(conf)])
            if out.returncode == 0:
                continue
            found = False
            for line in (out.stderr + out.stdout).splitlines():
                match = re.search(r"\[ALERT\].*?parsing \[[^\]]*:(\d+)\] : (.*)$", line)
                if match:
                    found = True
                    yield Problem(rel, int(match.group(1)), f"haproxy -c: {match.group(2).replace(scratch, '…')}")
            if not found:
                message = (out.stderr.strip() or out.stdout.strip()).replace(scratch, "…").splitlines()
                yield Problem(rel, 1, f"haproxy -c: {message[-1] if message else 'refused'}")


@rule("HAL502", "systemd-analyze-verify", "error", "tools", programs=("systemd-analyze",))
def systemd_analyze_verify(repo: Repo) -> Iterator[Problem]:
    """`systemd-analyze verify` accepts every unit: services and timers.

    systemd ignores an unknown key or a bad value with a log line and starts
    the service without it - a hardening option that silently does nothing,
    a Restart= that never restarts.
    """
    units = repo.units() + repo.timers()
    # Units of one name load once per run, so same-named units of different nodes go in separate runs.
    batches: list[list[str]] = []
    for rel in units:
        name = rel.rsplit("/", 1)[1]
        batch = next((b for b in batches if all(u.rsplit("/", 1)[1] != name for u in b)), None)
        if batch is None:
            batches.append(batch := [])
        batch.append(rel)
    for batch in batches:
        out = _run(["systemd-analyze", "verify", "--man=no", *(str(repo.root / rel) for rel in batch)])
        by_name = {rel.rsplit("/", 1)[1]: rel for rel in batch}
        for line in (out.stderr + out.stdout).splitlines():
            if _ships_with_node(repo, batch, line):
                continue
            match = re.match(r"^(\S+?):(\d+): (.*)$", line)
            if match and match.group(1).startswith(str(repo.root)):
                yield Problem(Path(match.group(1)).relative_to(repo.root).as_posix(), int(match.group(2)),
                          f"systemd: {match.group(3)}")
                continue
            named = re.match(r"^([^\s:]+\.(?:service|timer)): (.*)$", line)
            if named and named.group(1) in by_name:
                yield Problem(by_name[named.group(1)], 0, f"systemd: {named.group(2)}")


def _ships_with_node(repo: Repo, batch: list[str], line: str) -> bool:
    """A 'not executable' complaint about a program the unit's own node tree carries
    (a script under nodes/<node>/usr/local/sbin, executable there)."""
    match = re.search(r"Command (/\S+) is not executable", line)
    if not match:
        return False
    for rel in batch:
        program = repo.root / "nodes" / rel.split("/")[1] / match.group(1).lstrip("/")
        if program.is_file() and os.access(program, os.X_OK):
            return True
    return False


@rule("HAL503", "cloud-init-schema", "error", "tools", programs=("cloud-init",))
def cloud_init_schema(repo: Repo) -> Iterator[Problem]:
    """`cloud-init schema` accepts every node's user-data.

    cloud-init skips keys it does not know or whose values have the wrong type,
    and the node boots half-configured with no error shown anywhere you look.
    """
    for rel in repo.cloud_inits():
        out = _run(["cloud-init", "schema", "--config-file", str(repo.root / rel)])
        if out.returncode == 0:
            continue
        text = (out.stderr + out.stdout).replace(str(repo.root / rel), rel)
        problems = re.findall(r"(?:^|, )([A-Za-z_][\w.]*): (.*?)(?=, [A-Za-z_][\w.]*: |$)",
                              text.split("errors:", 1)[1].strip() if "errors:" in text else "")
        for key, message in problems or [("", text.strip().splitlines()[-1] if text.strip() else "invalid")]:
            top = key.split(".")[0]
            yield Problem(rel, repo.line_of(rel, rf"^{re.escape(top)}:") if top else 1,
                      f"cloud-init schema: {key + ': ' if key else ''}{message}")


@rule("HAL504", "shellcheck", "error", "tools", programs=("shellcheck",))
def shellcheck(repo: Repo) -> Iterator[Problem]:
    """`shellcheck` finds nothing in the node and deploy scripts.

    The scripts run as root on first boot, from cron and during a failover: an
    unquoted variable or a missed error there fails at the worst time.
    """
    scripts = [rel for rel in repo.scripts() if repo.text(rel).startswith("#!") and "sh" in repo.text(rel)[:40]]
    if not scripts:
        return
    out = _run(["shellcheck", "--severity=style", "--format=gcc", *scripts], cwd=repo.root)
    for line in out.stdout.splitlines():
        match = re.match(r"^(.+?):(\d+):\d+: (\w+): (.*)$", line)
        if match:
            yield Problem(match.group(1), int(match.group(2)), f"shellcheck {match.group(3)}: {match.group(4)}")


def _postgres_user_missing() -> bool:
    """As root the server runs as the postgres user, which must exist."""
    if os.geteuid() != 0:
        return False
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return True
    return shutil.which("runuser") is None


@rule("HAL505", "postgres-starts", "error", "tools", programs=("postgres", "openssl"))
def postgres_starts(repo: Repo) -> Iterator[Problem]:
    """A throwaway PostgreSQL starts with each DB node's postgresql.conf and pg_hba.conf, with no setting rejected.

    Only the real server knows every parameter name and value range of its
    version. The check uses the repo's PostgreSQL version if installed (else the
    newest installed server), socket-only, in a scratch data directory; settings
    stay as written, but for paths and listening.
    """
    confs = repo.pg_confs()
    version = confs[0].split("/")[4] if confs else ""
    bin_dir = pg_bin_dir(int(version) if version.isdigit() else None)
    if bin_dir is None or not confs:
        return
    with tempfile.TemporaryDirectory(prefix="halgen-lint-pg-") as scratch_name:
        scratch = Path(scratch_name)
        scratch.chmod(0o755)
        data = scratch / "template"
        if _postgres_user_missing():
            yield Problem(confs[0], 0,
                          "not checked: running as root and there is no postgres user to run the server as")
            return
        initdb = as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", pg_superuser(), "--no-instructions",
                             "--auth=peer")
        if os.geteuid() == 0:
            shutil.chown(scratch, "postgres")
        made = _run(initdb)
        if made.returncode != 0:
            yield Problem(confs[0], 0, f"not checked: initdb failed: {made.stderr.strip()[-200:]}")
            return
        key_pair(scratch / "server.crt", scratch / "server.key", "halgen-lint")
        for rel in confs:
            yield from _start_postgres(repo, rel, bin_dir, data, scratch)


def _start_postgres(repo: Repo, rel: str, bin_dir: Path, data: Path, scratch: Path) -> Iterator[Problem]:
    conf_dir = rel.rsplit("/", 1)[0]
    config = effective.pg(repo, rel)
    hba_rel = config.hba or f"{conf_dir}/pg_hba.conf"
    ident_rel = config.ident or f"{conf_dir}/pg_ident.conf"
    run_dir = scratch / "run"
    run_dir.mkdir(exist_ok=True)
    for source in repo.glob(re.escape(conf_dir) + "/.+"):  # what relative includes name (conf.d/...)
        copy = data / source.removeprefix(conf_dir + "/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(repo.text(source))
    for name, source in (("postgresql.conf", rel), ("pg_hba.conf", hba_rel), ("pg_ident.conf", ident_rel)):
        (data / name).write_text(repo.text(source))
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres", str(scratch)], check=True)
    overrides = {"data_directory": str(data), "hba_file": str(data / "pg_hba.conf"),
                 "ident_file": str(data / "pg_ident.conf"), "config_file": str(data / "postgresql.conf"),
                 "listen_addresses": "", "unix_socket_directories": str(run_dir), "external_pid_file": "",
                 "logging_collector": "off", "archive_mode": "off", "port": "5432",
                 # The node's own key and certificate exist only in build/ (halgen build), never in the repo.
                 "ssl_cert_file": str(scratch / "server.crt"), "ssl_key_file": str(scratch / "server.key")}
    argv = as_postgres(str(bin_dir / "postgres"), *(f"-c{k}={v}" for k, v in overrides.items()))
    log = scratch / "postgres.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = _wait(lambda: server.poll() is not None or subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", str(run_dir)]).returncode == 0, 30)
        if server.poll() is not None or not ready:
            yield from _postgres_log_hits(repo, rel, hba_rel, log.read_text(errors="replace"), str(data))
            return
        psql = as_postgres(str(bin_dir / "psql"), "-X", "-A", "-t", "-F", "\t", "-h", str(run_dir),
                           "-U", pg_superuser(), "-d", "postgres", "-c",
                           "SELECT 'conf', sourceline, name || ': ' || error FROM "
                           "pg_file_settings WHERE error IS NOT NULL UNION ALL SELECT 'hba', line_number, "
                           "error FROM pg_hba_file_rules WHERE error IS NOT NULL")
        for row in _run(psql).stdout.splitlines():
            kind, line, message = (row.split("\t") + ["", ""])[:3]
            if kind == "conf" and message.split(":", 1)[0] in overrides:
                continue  # overridden for the scratch server on purpose
            yield Problem(rel if kind == "conf" else hba_rel, int(line) if line.isdigit() else 0,
                                                                                        f"postgres: {message}")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(30)


def _postgres_log_hits(repo: Repo, rel: str, hba_rel: str, log: str, data: str) -> Iterator[Problem]:
    reported = False
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if "CONTEXT:" in line:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if "CONTEXT:" in following:  # 'line N of configuration file "..."' says where
            line = f"{line} {following.split('CONTEXT:', 1)[1].strip()}"
        match = re.search(r"(LOG|FATAL|ERROR):\s+(.*)$", line)
        if not match or "database system is shut down" in line or "starting PostgreSQL" in line:
            continue
        message = match.group(2)
        where = (re.search(r'file "([^"]+)" line (\d+)', message)
                 or re.search(r'line (\d+) of configuration file "([^"]+)"', message))
        target, number = rel, 0
        if where:
            groups = where.groups()
            path, num = (groups[0], groups[1]) if not groups[0].isdigit() else (groups[1], groups[0])
            target, number = (hba_rel if path.endswith("pg_hba.conf") else rel), int(num)
        else:
            param = re.search(r'parameter "([^"]+)"', message)
            if param:
                number = repo.line_of(rel, rf"^\s*{re.escape(param.group(1))}\s*=", default=0)
        if match.group(1) in {"FATAL", "ERROR"} or number or "invalid" in message:
            reported = True
            yield Problem(target, number, f"postgres: {message.replace(data + '/', '')}")
    if not reported:
        yield Problem(rel, 0, f"postgres did not start: {log.strip().splitlines()[-1] if log.strip() else 'no output'}")


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    try:
        wait_until(done, timeout, "the scratch server")
    except TimeoutError:
        return False
    return True


@rule("HAL506", "redis-starts", "error", "tools", programs=("redis-server", "openssl"))
def redis_starts(repo: Repo) -> Iterator[Problem]:
    """A throwaway redis-server (or redis-sentinel) starts with each node's redis.conf and sentinel.conf.

    Redis stops at the first directive it does not accept, so one bad line
    keeps the node's Redis down. The check runs on 127.0.0.1 in a scratch
    directory, the included secrets file and the ACL file replaced by dummies,
    TLS (when configured) with a throwaway certificate on a free port.
    """
    sentinels = set(repo.sentinel_confs())
    for rel in repo.redis_confs() + sorted(sentinels):
        with tempfile.TemporaryDirectory(prefix="halgen-lint-redis-") as scratch_name:
            yield from _start_redis(repo, rel, rel in sentinels, Path(scratch_name))


def _start_redis(repo: Repo, rel: str, sentinel: bool, scratch: Path) -> Iterator[Problem]:
    secrets = scratch / "secrets.conf"
    secrets.write_text("" if sentinel else "requirepass lint\nmasterauth lint\n")
    users = scratch / "users.acl"  # written by 'halgen build' like the secrets: an empty stand-in
    users.write_text("")
    conf = scratch / "redis.conf"  # Sentinel rewrites its file: always a copy
    text = re.sub(r"^include\s+\S+", f"include {secrets}", repo.text(rel), flags=re.M)
    conf.write_text(re.sub(r"^aclfile\s+\S+", f"aclfile {users}", text, flags=re.M))
    port = free_port()
    argv = ["redis-server", str(conf), *(["--sentinel"] if sentinel else []), "--dir", str(scratch),
            "--pidfile", str(scratch / "pid"), "--logfile", "", "--daemonize", "no", "--supervised", "no",
            "--bind", "127.0.0.1", "--port", str(port)]
    if not sentinel:
        argv += ["--replicaof", "no", "one", "--save", "", "--unixsocket", str(scratch / "redis.sock")]
    if re.search(r"^\s*tls-", text, flags=re.M):
        # The node's key and certificate exist only in build/ (halgen build), never in the repo.
        cert, key = scratch / "server.crt", scratch / "server.key"
        key_pair(cert, key, "halgen-lint")
        argv += ["--tls-port", str(free_port()), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                 "--tls-ca-cert-file", str(cert)]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        _wait(lambda: server.poll() is not None or _listening(port), 10)
        if server.poll() is None:
            return
        output = server.stdout.read() if server.stdout else ""
        line = re.search(r"at line (\d+)", output)
        bad = re.search(r">>> '(.*)'", output)
        reason = output.rsplit(">>>", 1)[-1].split("\n", 1)[-1].strip() if bad else output.strip()[-200:]
        yield Problem(rel, int(line.group(1)) if line else 0,
                  f"redis: {reason or 'exited'}" + (f" ({bad.group(1)})" if bad else ""))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
        server.wait(10)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
