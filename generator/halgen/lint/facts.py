"""Facts read off a repo's files (not its answers), shared by several rules."""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from halgen.formats import envfile, haproxy, nginx
from halgen.lint import effective
from halgen.lint.repo import ANSWERS_FILE, Repo, node_of


@dataclass(frozen=True)
class Listener:
    node: str
    file: str
    line: int
    address: str
    port: int
    what: str

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


# What each PSGI server does when an option is absent: its own defaults.
APP_SERVER_DEFAULTS = {
    "starman": {"workers": "5", "keepalive_timeout": "1"},
    "starlet": {"workers": "10", "keepalive_timeout": "2"},
}


@dataclass(frozen=True)
class AppCommand:
    """An app server unit's ExecStart=: Starman, or Starlet (plackup -s Starlet, alone or
    under Server::Starter's start_server), with the options that matter to the rules."""

    file: str
    line: int
    server: str  # "starman" or "starlet"
    listens: tuple[str, ...]  # ADDRESS:PORT
    options: dict[str, list[str]]  # the server's own options: '--workers' -> ['5']

    @property
    def workers(self) -> str:
        found = _last(self.options, "--workers" if self.server == "starman" else "--max-workers")
        return found or APP_SERVER_DEFAULTS[self.server]["workers"]

    @property
    def keepalive_timeout(self) -> str:
        return _last(self.options, "--keepalive-timeout") or APP_SERVER_DEFAULTS[self.server]["keepalive_timeout"]

    @property
    def title(self) -> str:
        return self.server.capitalize()


def getopt_long(argv: list[str]) -> dict[str, list[str]]:
    """Options as Getopt::Long reads them: both '--x y' and '--x=y' forms, '-s X' too."""
    options: dict[str, list[str]] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("-") or arg == "-":
            continue
        name, eq, value = arg.partition("=")
        if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
        options.setdefault(name, []).append(value)
    return options


def _last(options: dict[str, list[str]], *names: str) -> str:
    values = [v for name in names for v in options.get(name, [])]
    return values[-1] if values else ""


def app_command(file: str, line: int, argv: list[str]) -> AppCommand | None:
    program = argv[0].rsplit("/", 1)[-1] if argv else ""
    listens: list[str] = []
    if program == "start_server":
        split = argv.index("--") if "--" in argv else len(argv)
        listens = [v for v in getopt_long(argv[1:split]).get("--port", []) if ":" in v]
        argv = argv[split + 1:]
        program = argv[0].rsplit("/", 1)[-1] if argv else ""
    options = getopt_long(argv[1:])
    if program == "starman":
        server = "starman"
    elif program == "plackup" and _last(options, "-s", "--server").lower() == "starlet":
        server = "starlet"
    else:
        return None
    if not listens:
        listens = [v for v in options.get("--listen", []) + options.get("-l", []) if ":" in v]
        host, port = _last(options, "--host"), _last(options, "--port", "-p")
        if server == "starlet" and host and port:
            listens.append(f"{host}:{port}")
    return AppCommand(file, line, server, tuple(listens), options)


@functools.cache
def app_commands(repo: Repo) -> list[AppCommand]:
    """The ExecStart= of every app server unit."""
    found = []
    for rel in repo.app_units():
        for entry in repo.unit(rel)[0]:
            if entry.key != "ExecStart":
                continue
            try:
                argv = shlex.split(entry.value)
            except ValueError:
                continue
            command = app_command(rel, entry.line, argv)
            if command is not None:
                found.append(command)
    return found


@functools.cache
def app_listeners(repo: Repo) -> list[Listener]:
    """Every app server's listen address (once per lint run: each node's checks ask)."""
    found = []
    for command in app_commands(repo):
        for value in command.listens:
            host, _, port = value.rpartition(":")
            if host and port.isdigit():
                found.append(Listener(node_of(command.file), command.file, command.line, host, int(port),
                                      command.title))
    return found


@dataclass(frozen=True)
class Balancer:
    """A load balancer's HAProxy: where nginx reaches it, and the servers it balances over."""

    file: str
    binds: frozenset[str]  # ADDRESS:PORT of its frontends
    servers: tuple[haproxy.Line, ...]  # 'server NAME ADDRESS:PORT ...' lines of its backends
    backends: tuple[haproxy.Section, ...]
    frontends: tuple[haproxy.Section, ...]
    defaults: haproxy.Section | None


def balancer(repo: Repo, node: str) -> Balancer | None:
    rel = repo.one(node, r"etc/haproxy/haproxy\.cfg")
    if rel is None:
        return None
    sections = repo.haproxy(rel)[0]
    frontends = tuple(haproxy.of_kind(sections, "frontend", "listen"))
    binds = frozenset(b.args[0] for s in frontends for b in s.all("bind") if b.args)
    backends = tuple(haproxy.of_kind(sections, "backend", "listen"))
    servers = tuple(line for b in backends for line in b.all("server") if len(line.args) >= 2)
    defaults = next(iter(haproxy.of_kind(sections, "defaults")), None)
    return Balancer(rel, binds, servers, backends, frontends, defaults)


def upstream_servers(repo: Repo, rel: str) -> list[nginx.Directive]:
    return [d for d in effective.nginx_directives(repo, rel) if d.name == "server" and d.context == "upstream"]


def nginx_ports(repo: Repo, rel: str) -> list[tuple[int, int]]:
    """(port, line) of every listen directive."""
    ports = []
    for d in effective.nginx_all(repo, rel, "listen"):
        match = re.search(r"(\d+)$", d.args[0]) if d.args else None
        address = d.args[0].rsplit(":", 1)[0] if d.args and ":" in d.args[0] else "*"
        if match and not is_loopback(address):
            ports.append((int(match.group(1)), d.line))
    return ports


def redis_endpoint(repo: Repo, rel: str, default_port: int) -> tuple[str, int] | None:
    config = effective.redis(repo, rel)
    bind, port = config.last("bind"), config.last("port")
    if port and port.args == ("0",):  # TLS only: 'port 0' and the service on tls-port
        port = config.last("tls-port")
    if bind is None or not bind.args:
        return None
    return bind.args[0], int(port.args[0]) if port and port.args and port.args[0].isdigit() else default_port


def redis_master(repo: Repo) -> tuple[str, int, str] | None:
    """(address, port, file) of the one redis.conf without replicaof, if exactly one."""
    masters = [rel for rel in repo.redis_confs() if effective.redis(repo, rel).last("replicaof") is None]
    if len(masters) != 1:
        return None
    endpoint = redis_endpoint(repo, masters[0], 6379)
    return (*endpoint, masters[0]) if endpoint else None


def node_listeners(repo: Repo, node: str) -> list[Listener]:
    """Every TCP port a node's files make it listen on (beside sshd)."""
    found: list[Listener] = [s for s in app_listeners(repo) if s.node == node]
    for rel in repo.node_files(node, r"etc/nginx/nginx\.conf"):
        found += [Listener(node, rel, line, "*", port, "nginx") for port, line in nginx_ports(repo, rel)]
    for rel in repo.node_files(node, r"etc/postgresql/\d+/main/postgresql\.conf"):
        settings = effective.pg(repo, rel).settings
        listen = settings.get("listen_addresses")
        port = settings.get("port")
        if listen and listen.value.strip():
            number = int(port.value) if port and port.value.isdigit() else 5432
            found.append(Listener(node, listen.file or rel, listen.line, listen.value, number, "PostgreSQL"))
    for rel, default, what in ([(r, 6379, "Redis") for r in repo.node_files(node, r"etc/redis/redis\.conf")]
                               + [(r, 26379, "Sentinel") for r in repo.node_files(node, r"etc/redis/sentinel\.conf")]):
        endpoint = redis_endpoint(repo, rel, default)
        if endpoint:
            bind = effective.redis(repo, rel).last("bind")
            found.append(Listener(node, bind.file or rel, bind.line, *endpoint, what))  # type: ignore[union-attr]
    return found + patroni_listeners(repo, node) + etcd_listeners(repo, node) + exporter_listeners(repo, node)


def patroni_listeners(repo: Repo, node: str) -> list[Listener]:
    """Patroni's REST API (restapi.listen of /etc/patroni/config.yml)."""
    found = []
    for rel in repo.node_files(node, r"etc/patroni/config\.yml"):
        try:
            config = YAML(typ="safe").load(repo.text(rel)) or {}
        except YAMLError:
            continue  # halgen lint reports files that do not parse elsewhere
        listen = str((config.get("restapi") or {}).get("listen", "")) if isinstance(config, dict) else ""
        address, _, port = listen.rpartition(":")
        if address and port.isdigit():
            found.append(Listener(node, rel, repo.line_of(rel, r"^\s+listen:"), address, int(port), "Patroni REST API"))
    return found


def etcd_listeners(repo: Repo, node: str) -> list[Listener]:
    """etcd's client and peer URLs (ETCD_LISTEN_*_URLS of /etc/default/etcd)."""
    found = []
    for rel in repo.node_files(node, r"etc/default/etcd"):
        settings = envfile.parse(repo.text(rel))[0]
        for key, default, what in (("ETCD_LISTEN_CLIENT_URLS", 2379, "etcd (clients)"),
                                   ("ETCD_LISTEN_PEER_URLS", 2380, "etcd (peers)")):
            setting = settings.get(key)
            for url in setting.value.split(",") if setting else ():
                try:
                    parts = urlsplit(url.strip())
                    port = parts.port or default
                except ValueError:
                    continue
                if parts.hostname:
                    found.append(Listener(node, rel, setting.line, parts.hostname, port, what))  # type: ignore[union-attr]
    return found


_LISTEN_ARG = re.compile(r"(?:^|\s)--?web\.listen-address[= ](\S+):(\d+)")
# Debian's units of the exporters that run on every node (or every load balancer): their
# /etc/default file, and what listens
_EXPORTERS = (("prometheus-node-exporter", "node_exporter"), ("prometheus-nginx-exporter", "nginx exporter"))


def exporter_listeners(repo: Repo, node: str) -> list[Listener]:
    """The exporters' ports: --web.listen-address in their /etc/default ARGS, mtail's HOST and PORT."""
    found = []
    for name, what in _EXPORTERS:
        for rel in repo.node_files(node, rf"etc/default/{name}"):
            setting = envfile.parse(repo.text(rel))[0].get("ARGS")
            match = _LISTEN_ARG.search(setting.value.strip("\"'")) if setting else None
            if setting and match:
                found.append(Listener(node, rel, setting.line, match.group(1), int(match.group(2)), what))
    for rel in repo.node_files(node, r"etc/default/mtail"):
        settings = envfile.parse(repo.text(rel))[0]
        host, port = settings.get("HOST"), settings.get("PORT")
        if host and port and port.value.isdigit():
            found.append(Listener(node, rel, port.line, host.value.strip("\"'"), int(port.value), "mtail"))
    return found


def dsn_hosts(dsn: str) -> tuple[list[str], list[str], str]:
    """DBI DSN -> (hosts, ports, dbname)."""
    fields = dict(part.split("=", 1) for part in dsn.removeprefix("dbi:Pg:").split(";") if "=" in part)
    return (fields.get("host", "").split(",") if fields.get("host") else [],
            fields.get("port", "").split(",") if fields.get("port") else [], fields.get("dbname", ""))


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address == "localhost"


def block_size(source: str) -> int | None:
    """How many addresses a CIDR block (or bare address) holds; None when it is no address."""
    try:
        return ipaddress.ip_network(source.split()[0], strict=False).num_addresses
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def covers(source: str, address: str) -> bool:
    """Whether a firewall/pg_hba source ('any', a CIDR or an address) includes address."""
    if source in {"any", "all", "0.0.0.0/0"}:
        return True
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(source.split()[0], strict=False)
    except ValueError:
        return False


def vpc_tls(repo: Repo) -> bool:
    """The answer vpc_tls; true when absent, and when the answers cannot be read (HAL001 says
    why): a security rule stays on unless the answers clearly turn TLS off."""
    if repo.answers is not None:
        return repo.answers.vpc_tls
    data, _ = repo.yaml(ANSWERS_FILE)
    return not (isinstance(data, dict) and data.get("vpc_tls") is False)
