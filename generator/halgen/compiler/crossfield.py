"""Cross-field rules that JSON Schema cannot express, reported like schema errors.

Each rule reads complete answers (defaults filled in) and yields
``(field path, message, value)``; ``check`` turns them into Problems with lines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any, cast

from halgen.compiler import pgsettings, resources, schema
from halgen.compiler.answers import Answers
from halgen.compiler.loader import LoadedAnswers
from halgen.compiler.model import (
    RESERVED_HEAD,
    RESERVED_TAIL,
    covers_internet,
    etcd_hosts,
    listeners,
    node_names,
    plan_addresses,
    sentinel_hosts,
    ssh_repo_host,
)
from halgen.errors import FieldPath, Problem, dotted
from halgen.formats import cron

Violation = tuple[FieldPath, str, Any]
CrossFieldRule = Callable[[Answers], Iterator[Violation]]
CROSS_FIELD_RULES: list[CrossFieldRule] = []

_LEGACY_PRIVATE = ipaddress.IPv4Network("192.168.128.0/17")
_RFC1918 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
_RESERVED_USERS = {"root", "daemon", "bin", "sys", "sync", "nobody", "postgres", "redis", "www-data", "sshd", "_apt"}


def rule(fn: CrossFieldRule) -> CrossFieldRule:
    CROSS_FIELD_RULES.append(fn)
    return fn


@rule
def subnet_is_private_and_sized(a: Answers) -> Iterator[Violation]:
    net = ipaddress.IPv4Network(a.vpc_subnet, strict=False)
    if str(net.network_address) != a.vpc_subnet.split("/")[0]:
        yield ("vpc_subnet",), f"has host bits set; the network is {net}", a.vpc_subnet
    if not any(net.subnet_of(r) for r in _RFC1918):
        yield ("vpc_subnet",), "must be an RFC 1918 private range (10/8, 172.16/12, 192.168/16)", a.vpc_subnet
    elif net.overlaps(_LEGACY_PRIVATE):
        yield ("vpc_subnet",), "must not overlap 192.168.128.0/17 (Linode's legacy private range)", a.vpc_subnet
    if not 16 <= net.prefixlen <= 24:
        yield ("vpc_subnet",), "prefix must be /16 to /24", a.vpc_subnet


@rule
def fixed_addresses_are_valid(a: Answers) -> Iterator[Violation]:
    if not _subnet_ok(a):
        return
    net = ipaddress.IPv4Network(a.vpc_subnet, strict=False)
    known = {n for names in node_names(a).values() for n in names}
    seen: dict[str, str] = {}
    for name, ip in a.node_addresses.items():
        path = ("node_addresses", name)
        if name not in known:
            yield path, "names no node of this stack (nodes: " + _short_list(sorted(known)) + ")", name
            continue
        addr = ipaddress.IPv4Address(ip)
        offset = int(addr) - int(net.network_address)
        if addr not in net:
            yield path, f"is outside the subnet {net}", ip
        elif offset < RESERVED_HEAD or offset > net.num_addresses - 1 - RESERVED_TAIL:
            yield path, "is one of the first two or last two addresses of the subnet, which Linode reserves", ip
        if ip in seen:
            yield path, f"is already the address of {seen[ip]}", ip
        seen[ip] = name


@rule
def subnet_has_room(a: Answers) -> Iterator[Violation]:
    if not _subnet_ok(a):
        return
    _, overflow = plan_addresses(a)
    if overflow:
        message = f"has no room for {len(overflow)} node(s) ({_short_list(overflow)}); use a larger subnet"
        yield ("vpc_subnet",), message, a.vpc_subnet


@rule
def weights_name_app_servers(a: Answers) -> Iterator[Violation]:
    apps = set(node_names(a)["app"])
    for name in a.lb_weights:
        if name not in apps:
            yield ("lb_weights", name), f"names no app server (there are app1..app{a.app_servers})", name


@rule
def retries_fit_timeouts(a: Answers) -> Iterator[Violation]:
    # nginx starts another try only within proxy_next_upstream_timeout: if that is
    # shorter than a try that timed out, a hung app server costs its requests a 504.
    one_try = a.lb_connect_timeout_s + a.lb_read_timeout_s
    if a.lb_next_upstream_tries > 1 and a.lb_next_upstream_timeout_s <= one_try:
        yield (("lb_next_upstream_timeout_s",),
               f"must exceed lb_connect_timeout_s + lb_read_timeout_s ({one_try}), or a request that timed out on "
               "a hung app server is never retried on another (504)", a.lb_next_upstream_timeout_s)


@rule
def keepalive_is_safe(a: Answers) -> Iterator[Violation]:
    if a.lb_keepalive_timeout_s >= a.app_keepalive_timeout_s:
        yield (("lb_keepalive_timeout_s",),
               f"must be shorter than app_keepalive_timeout_s ({a.app_keepalive_timeout_s}), or HAProxy reuses "
               "connections the app server already closed (502 on POST)", a.lb_keepalive_timeout_s)
    # Every load balancer keeps its own idle connections, and each pins an app server worker.
    nginx_workers = resources.price_catalogue()["plans"][a.lb_plan]["vcpus"] * a.lb_count
    app_workers = a.app_servers * a.app_instances * a.app_workers
    if a.lb_keepalive and a.lb_keepalive * nginx_workers >= app_workers:
        yield (("lb_keepalive",),
               f"x {nginx_workers} nginx worker(s) on all load balancers would let idle connections pin all "
               f"{app_workers} app server workers; lower it or add workers", a.lb_keepalive)


@rule
def ports_fit(a: Answers) -> Iterator[Violation]:
    top = a.app_port + a.app_instances - 1
    if top > 65535:
        yield ("app_port",), f"leaves no room for {a.app_instances} instances (last port {top})", a.app_port
        return
    # Two programs on one address:port: the second never starts.
    for node, ports in listeners(a).items():
        seen: dict[int, str] = {}
        for port, what in ports:
            if port in seen:
                yield (("app_port",), f"puts {what} on port {port} of {node}, where {seen[port]} listens; "
                       "choose app_port so that the app server ports miss it", a.app_port)
                return
            seen[port] = what


@rule
def database_connections_suffice(a: Answers) -> Iterator[Violation]:
    # Each app server worker holds one connection; PostgreSQL also needs room for
    # superusers (3 reserved), WAL senders (one per replica) and maintenance.
    needed = a.app_servers * a.app_instances * a.app_workers + 3 + a.pg_replicas + 10
    if a.pg_max_connections < needed:
        yield (("pg_max_connections",),
               f"is below the {needed} connections the app tier can open (every app server worker + replication + "
               "administration); raise it or use fewer workers", a.pg_max_connections)


@rule
def pg_replication_is_coherent(a: Answers) -> Iterator[Violation]:
    # ANY 1 of a single standby stalls every commit while that standby is down - and
    # for good after a failover promotes it. Two standbys keep sync commits possible.
    if a.pg_replication == "sync" and a.pg_replicas < 2:
        yield (("pg_replication",), "sync needs at least two replicas (pg_replicas >= 2): with one, every commit "
               "waits while it is down, and after a failover no standby is left", a.pg_replication)


@rule
def redis_replication_is_coherent(a: Answers) -> Iterator[Violation]:
    mode, replicas = a.redis_mode, a.redis_replicas
    if mode == "single" and replicas:
        yield ("redis_replicas",), "must be 0 with redis_mode single (or choose replica or sentinel)", replicas
    if mode != "single" and replicas < 1:
        yield ("redis_replicas",), f"must be at least 1 with redis_mode {mode}", replicas


@rule
def sentinels_have_distinct_nodes(a: Answers) -> Iterator[Violation]:
    if a.redis_mode != "sentinel" or a.redis_replicas < 1:
        return
    hosts = sentinel_hosts(a)
    if len(hosts) < a.sentinel_count:
        yield (("sentinel_count",),
               f"needs {a.sentinel_count} distinct nodes but the stack has only {len(hosts)} Redis, app and "
               "database nodes; a majority quorum on fewer nodes cannot survive one node's loss", a.sentinel_count)


@rule
def patroni_is_coherent(a: Answers) -> Iterator[Violation]:
    if a.pg_failover != "patroni":
        return
    # Patroni's own rule: a primary that cannot reach etcd retries twice before it demotes
    # itself, and must have done so before its lock expires and a replica takes over.
    if a.patroni_loop_wait + 2 * a.patroni_retry_timeout > a.patroni_ttl:
        yield (("patroni_ttl",), f"must be at least patroni_loop_wait + 2 x patroni_retry_timeout "
               f"({a.patroni_loop_wait + 2 * a.patroni_retry_timeout}), or a primary cut off from etcd may still "
               "accept writes after a replica is promoted", a.patroni_ttl)
    if a.etcd_nodes:
        names = {name for names in node_names(a).values() for name in names}
        for i, name in enumerate(a.etcd_nodes):
            if name not in names:
                yield ("etcd_nodes", i), "is not a node of this stack", name
        if len(a.etcd_nodes) != a.etcd_count:
            yield (("etcd_nodes",), f"names {len(a.etcd_nodes)} nodes but etcd_count is {a.etcd_count}; an etcd "
                   "cluster needs an odd number of at least 3 members on distinct nodes", list(a.etcd_nodes))
    elif len(etcd_hosts(a)) < a.etcd_count:
        yield (("etcd_count",), f"needs {a.etcd_count} distinct nodes but the stack has only "
               f"{len(etcd_hosts(a))}", a.etcd_count)
    if a.pg_sync_strict and a.pg_replication != "sync":
        yield ("pg_sync_strict",), "applies only with pg_replication sync", a.pg_sync_strict


@rule
def users_are_distinct(a: Answers) -> Iterator[Violation]:
    if a.app_user in _RESERVED_USERS:
        yield ("app_user",), "is a system account name; choose another", a.app_user
    seen: set[str] = set()
    for i, admin in enumerate(a.admins):
        name = admin.name
        if name in _RESERVED_USERS or name == a.app_user:
            yield ("admins", i, "name"), "clashes with a system or app account", name
        if name in seen:
            yield ("admins", i, "name"), "is listed twice", name
        seen.add(name)


@rule
def pg_settings_are_not_managed(a: Answers) -> Iterator[Violation]:
    from halgen.compiler.sizing import PG_MANAGED

    ram_mb = resources.price_catalogue()["plans"][a.db_plan]["ram_mb"]
    for name, value in a.pg_settings.items():
        if name in PG_MANAGED:
            yield ("pg_settings", name), "is set by halgen from the other answers; change those instead", name
            continue
        for message in pgsettings.problems(name, value, a.pg_version, ram_mb):
            yield ("pg_settings", name), message, value


@rule
def static_paths_avoid_health(a: Answers) -> Iterator[Violation]:
    for i, path in enumerate(a.lb_static_paths):
        if a.lb_health_path.startswith(path.rstrip("/") + "/") or a.lb_health_path == path:
            yield ("lb_static_paths", i), f"shadows the health endpoint {a.lb_health_path}", path


@rule
def ssh_is_not_open_to_everyone(a: Answers) -> Iterator[Violation]:
    # Each CIDR may look narrow; together they can still be the whole Internet.
    if covers_internet(a.admin_cidrs) and not a.admin_cidrs_allow_internet:
        yield (("admin_cidrs",), "together cover the whole IPv4 Internet: SSH would be open to everyone and fail2ban "
               "would ignore every address; name your networks, or set admin_cidrs_allow_internet: true",
               list(a.admin_cidrs))


def _object_storage_clusters() -> dict[str, list[str]]:
    clusters: dict[str, list[str]] = resources.load_json(resources.DATA_DIR / "linode_regions.json")["object_storage"]
    return clusters


def endpoint_for(region: str) -> str:
    """The Object Storage endpoint of a region the catalogue knows, else the usual form of
    newer regions' endpoints (a default to offer, which the user checks in Cloud Manager)."""
    clusters = _object_storage_clusters().get(region)
    return f"{clusters[0] if clusters else region + '-1'}.linodeobjects.com"


@rule
def region_boots_user_data(a: Answers) -> Iterator[Violation]:
    # Nodes are configured by cloud-init from the Metadata service: a region without it
    # would boot every node bare.
    capabilities = resources.load_json(resources.DATA_DIR / "linode_regions.json")["capabilities"]
    known = capabilities.get(a.region)
    if known is not None and not known["metadata"]:
        with_it = sorted(r for r, c in capabilities.items() if c["metadata"] and c["vpc"])
        yield (("region",), "offers no Metadata service, so no node could read its user-data; choose a region that "
               f"does, e.g. {', '.join(with_it[:4])}", a.region)


@rule
def backups_stay_in_the_region(a: Answers) -> Iterator[Violation]:
    # A bucket in another data centre makes every WAL segment cross the Internet, and
    # the region's own endpoint is what its key and bucket were made for.
    clusters = _object_storage_clusters()
    cluster = a.backup_endpoint.removesuffix(".linodeobjects.com")
    home = next((region for region, names in clusters.items() if cluster in names), None)
    if home is not None and home != a.region and not a.backup_offsite:
        ours = clusters.get(a.region)
        suggestion = (f"use {ours[0]}.linodeobjects.com" if ours else
                      f"use the endpoint Cloud Manager shows for a bucket in {a.region}")
        yield (("backup_endpoint",), f"is Object Storage in {home}, but the stack is in {a.region}: {suggestion} "
               "(or set backup_offsite: true for off-site backups)", a.backup_endpoint)


SCHEDULES = tuple(name for name in schema.fields() if name.endswith("_schedule"))  # cron fields


@rule
def schedules_can_run(a: Answers) -> Iterator[Violation]:
    # cron takes an impossible schedule without a word, and the backup never runs.
    for name in SCHEDULES:
        text = getattr(a, name)
        if text:
            try:
                cron.schedule(text)
            except cron.CronError as err:
                yield (name,), f"is not a schedule cron runs: {err}", text


def check(loaded: LoadedAnswers, complete: Answers) -> list[Problem]:
    return [
        Problem(loaded.file, loaded.line_of(path), message, path, value)
        for fn in CROSS_FIELD_RULES
        for path, message, value in fn(complete)
    ]


class _ReadRecorder:
    """Answers that note which fields a rule reads."""

    def __init__(self, answers: Answers):
        self._answers = answers
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._answers, name)


def early_violation(field: str, answered: dict[str, Any]) -> str:
    """For a question being answered: the first message of a rule that reads this field and
    otherwise only fields answered before it (``answered``; the rest take defaults), else
    ''. The rules do not declare what they read: a recorder learns it while they run."""
    answers = Answers.from_dict(schema.with_defaults(answered))
    for fn in CROSS_FIELD_RULES:
        recorder = _ReadRecorder(answers)
        violations = list(fn(cast(Answers, recorder)))
        if field in recorder.read and recorder.read <= answered.keys():
            for path, message, _value in violations:
                return message if path[0] == field else f"{dotted(path)} {message}"
    return ""


def _subnet_ok(a: Answers) -> bool:
    return not list(subnet_is_private_and_sized(a))


def _short_list(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


@rule
def repo_host_keys_match_the_repo(a: Answers) -> Iterator[Violation]:
    host = ssh_repo_host(a.app_repo)
    if host is None:
        if a.app_repo_host_keys:
            yield (("app_repo_host_keys",), "is only for an SSH app_repo (user@host:path)", list(a.app_repo_host_keys))
        return
    if not a.app_repo_host_keys:
        yield (("app_repo_host_keys",), f"an SSH app_repo needs {host}'s host keys (known_hosts lines from "
               f"ssh-keyscan {host}, fingerprints checked): the app servers trust no other key", [])
    for i, line in enumerate(a.app_repo_host_keys):
        if line.split(" ", 1)[0] != host:
            yield (("app_repo_host_keys", i), f"names {line.split(' ', 1)[0]}, not app_repo's host {host}", line)


@rule
def alert_receivers_are_coherent(a: Answers) -> Iterator[Violation]:
    # A receiver setting that does nothing is a mistake the user would not see until an outage.
    receivers = ("alert_smtp_relay", "alert_smtp_user", "alert_email_from", "alert_webhook_url")
    if not a.monitoring:
        for name in receivers:
            if getattr(a, name):
                yield (name,), "needs monitoring: true (no node sends alerts without it)", getattr(a, name)
        return
    for name in ("alert_smtp_user", "alert_email_from"):
        if getattr(a, name) and not a.alert_smtp_relay:
            yield (name,), "is for e-mail through alert_smtp_relay, which is empty", getattr(a, name)


@rule
def retention_covers_the_schedules(a: Answers) -> Iterator[Violation]:
    # JobLate compares each timer with its value that long ago: Prometheus must still have it.
    if not a.monitoring or not _subnet_ok(a) or list(schedules_can_run(a)):
        return  # the rules that own those answers report them
    from halgen.compiler.model import derive

    try:
        stack = derive(a)
    except (KeyError, ValueError, cron.CronError):
        return  # answers the stack cannot be made from (too many nodes for the subnet...): other rules say why
    longest = max((job.late_after_s for node in stack.nodes for job in stack.jobs(node)), default=0)
    days = -(-longest // 86400) + 1
    if a.mon_retention_days < days:
        yield (("mon_retention_days",), f"must be at least {days}: the longest gap between two runs of a "
               f"scheduled job (with its delay and time limit) is {longest / 86400:.1f} days, and the JobLate "
               "alert compares each timer with its value that long ago", a.mon_retention_days)
