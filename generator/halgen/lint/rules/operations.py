"""The stack keeps running: limits, sizing, backups, leftovers."""

from __future__ import annotations

import re
from collections.abc import Iterator

from halgen.compiler.cloudinit import USER_DATA_LIMIT
from halgen.errors import HalgenError, Problem
from halgen.formats import haproxy
from halgen.formats.pgconf import pg_bytes
from halgen.lint import effective, facts
from halgen.lint.registry import rule
from halgen.lint.repo import Repo, node_of

HAPROXY_DEFAULT_PURGE_S = 5
NGINX_DEFAULT_UPSTREAM_KEEPALIVE_S = 60


@rule("HAL401", "user-data-size", "error", "operations")
def user_data_size(repo: Repo) -> Iterator[Problem]:
    """Each node's cloud-init user-data, as `halgen build` would make it now, fits Linode's 16,384-byte limit.

    Linode refuses larger user-data when the node is created. The document is
    the node's cloud-init.yaml plus all its files, compressed, with secrets of
    their real length; a node with many or large files must move some to a
    package or a repo the first boot fetches.
    """
    if repo.answers is None:
        return
    from halgen.compiler import secrets
    from halgen.compiler.cloudinit import READABLE_FILE, UserDataTooLarge
    from halgen.compiler.write import user_data

    try:
        user_data(repo.root, repo.answers, secrets.stand_ins())
    except UserDataTooLarge as err:
        node = str(err).split(":", 1)[0]
        yield Problem(f"nodes/{node}/{READABLE_FILE}", 0, f"with the node's files: {str(err).split(': ', 1)[1]}")
    except HalgenError:
        return  # a missing or malformed readable part: HAL102 and HAL209 report it
    for built in sorted((repo.root / "build" / "user-data").glob("*.yaml")):
        size = built.stat().st_size
        if size > USER_DATA_LIMIT:
            yield Problem(built.relative_to(repo.root).as_posix(), 0, f"{size} bytes; Linode accepts at most "
                          f"{USER_DATA_LIMIT}")


@rule("HAL402", "slot-wal-limit", "error", "operations")
def slot_wal_limit(repo: Repo) -> Iterator[Problem]:
    """With replication slots, max_slot_wal_keep_size bounds the WAL a lost replica can pin.

    A slot keeps WAL until its replica has it. A replica that is gone for good
    (or a slot nobody uses) then fills the primary's disk and stops it: the
    seed's setup had this trap. Set max_slot_wal_keep_size below the free disk.
    """
    for rel in repo.pg_confs():
        settings = effective.pg(repo, rel).settings
        slots = settings.get("max_replication_slots")
        if slots is not None and slots.value.isdigit() and int(slots.value) == 0:
            continue
        keep = settings.get("max_slot_wal_keep_size")
        if keep is None or keep.value.strip() == "-1":
            yield Problem(rel, keep.line if keep else (slots.line if slots else 1),
                      "replication slots without max_slot_wal_keep_size: a lost replica can fill the disk")


def _seconds(value: str) -> float | None:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    if not match:
        return None
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[match.group(2)]


@rule("HAL403", "upstream-keepalive-timeout", "error", "operations")
def upstream_keepalive_timeout(repo: Repo) -> Iterator[Problem]:
    """Whoever keeps a connection to the next hop open closes it when idle before the
    next hop does: HAProxy's pool-purge-delay below the app server's --keepalive-timeout,
    and nginx's upstream keepalive_timeout below HAProxy's (or, proxying to the app
    servers directly, theirs).

    If the server closes an idle connection first, the next request may be sent
    into a socket that is being closed: a 502 for the client, and POSTs are not
    retried. nginx's default is 60 s, HAProxy's pool-purge-delay 5 s, Starman's 1 s,
    Starlet's 2 s.
    """
    limits = [(t, c.file, c.title) for c in facts.app_commands(repo)
              if (t := _seconds(c.keepalive_timeout)) is not None]
    if not limits:
        return
    shortest, where, title = min(limits)
    listeners = {s.endpoint for s in facts.app_listeners(repo)}
    for rel in repo.nginx_confs():
        balancer = facts.balancer(repo, node_of(rel))
        if balancer is not None:
            for line, delay in _purge_delays(balancer):
                if delay is not None and delay >= shortest:
                    yield Problem(balancer.file, line,
                                  f"pool-purge-delay {delay:g}s is not below {title}'s {shortest:g}s ({where})")
        for upstream in effective.nginx_all(repo, rel, "upstream"):
            if upstream.child("keepalive") is None:
                continue
            targets = {d.args[0] for d in upstream.children() if d.name == "server" and d.args}
            if balancer is not None and targets & balancer.binds:
                limit, limit_where = _haproxy_idle_timeout(balancer), f"HAProxy's, {balancer.file}"
            elif targets & listeners:
                limit, limit_where = shortest, f"{title}'s, {where}"
            else:
                continue
            setting = upstream.child("keepalive_timeout")
            timeout = _seconds(setting.args[0]) if setting and setting.args else NGINX_DEFAULT_UPSTREAM_KEEPALIVE_S
            if timeout is not None and limit is not None and timeout >= limit:
                yield Problem(rel, setting.line if setting else upstream.line,
                              f"upstream keepalive_timeout {timeout:g}s is not below {limit:g}s ({limit_where})")


def _purge_delays(balancer: facts.Balancer) -> Iterator[tuple[int, float | None]]:
    """(line, seconds) of each server's pool-purge-delay: its own, else its section's
    default-server's, else HAProxy's default."""
    for backend in balancer.backends:
        default = backend.last("default-server") or (balancer.defaults.last("default-server")
                                                      if balancer.defaults else None)
        for server in backend.all("server"):
            for line in (server, default):
                if line is not None and "pool-purge-delay" in line.args[:-1]:
                    value = line.args[line.args.index("pool-purge-delay") + 1]
                    yield line.line, haproxy.seconds(value)
                    break
            else:
                yield server.line, HAPROXY_DEFAULT_PURGE_S


def _haproxy_idle_timeout(balancer: facts.Balancer) -> float | None:
    """How long HAProxy keeps an idle client connection: timeout http-keep-alive, else timeout client."""
    for keyword in ("http-keep-alive", "client"):
        for section in [*balancer.frontends, balancer.defaults]:
            found = section.option("timeout", keyword) if section else None
            if found is not None and len(found.args) > 1:
                return haproxy.seconds(found.args[1])
    return None


@rule("HAL404", "upstream-keepalive", "warning", "operations")
def upstream_keepalive(repo: Repo) -> Iterator[Problem]:
    """nginx keeps connections to the next hop open (upstream keepalive, HTTP/1.1, empty Connection header).

    Without keepalive every request pays a new TCP connection - the
    seed's config did this, and it roughly halves throughput. keepalive only
    works with `proxy_http_version 1.1` and `proxy_set_header Connection ""`
    in the location that proxies.
    """
    for rel in repo.nginx_confs():
        upstreams = {u.args[0]: u for u in effective.nginx_all(repo, rel, "upstream") if u.args}
        for name, upstream in upstreams.items():
            if upstream.child("keepalive") is None:
                yield Problem(rel, upstream.line, f"upstream {name} has no keepalive")
        for proxy in effective.nginx_all(repo, rel, "proxy_pass"):
            target = re.sub(r"^https?://", "", proxy.args[0]) if proxy.args else ""
            pool = upstreams.get(target)
            if pool is None or pool.child("keepalive") is None:
                continue
            around = [c for scope in proxy.parents for c in scope.children()]
            if not any(d.name == "proxy_http_version" and d.args == ("1.1",) for d in around):
                yield Problem(rel, proxy.line, "keepalive upstream without 'proxy_http_version 1.1': no reuse")
            if not any(d.name == "proxy_set_header" and d.args[:1] == ("Connection",)
                       and d.args[1:] in {("",), ('""',)} for d in around):
                yield Problem(rel, proxy.line, "keepalive upstream without 'proxy_set_header Connection \"\"'")


@rule("HAL405", "pg-connections-suffice", "error", "operations")
def pg_connections_suffice(repo: Repo) -> Iterator[Problem]:
    """PostgreSQL's max_connections covers every app server worker plus replication and administration.

    Each app server worker (Starman or Starlet) holds a connection. When they exceed max_connections,
    the workers that come last get 'too many clients' - under peak load, when
    it hurts most.
    """
    counts = [c.workers for c in facts.app_commands(repo)]
    workers = sum(int(n) for n in counts if n.isdigit())
    replicas = max(len(repo.pg_confs()) - 1, 0)
    for rel in repo.pg_confs():
        settings = effective.pg(repo, rel).settings
        limit = settings.get("max_connections")
        reserved = settings.get("superuser_reserved_connections")
        needed = workers + (int(reserved.value) if reserved and reserved.value.isdigit() else 3) + replicas
        if limit and limit.value.isdigit() and int(limit.value) < needed:
            yield Problem(rel, limit.line, f"max_connections = {limit.value} is below the {needed} needed: {workers} "
                                       f"app server workers + reserved + {replicas} replica(s)")


def _ram_bytes(repo: Repo, node: str) -> int | None:
    model = repo.node(node)
    return model.plan.ram_mb * 1024**2 if model else None


@rule("HAL406", "pg-memory-fits-plan", "warning", "operations")
def pg_memory_fits_plan(repo: Repo) -> Iterator[Problem]:
    """shared_buffers stays within 40 % of the DB plan's RAM, and effective_cache_size within the RAM.

    shared_buffers above ~40 % starves the OS page cache PostgreSQL also relies
    on, and leaves no room for work_mem; past the RAM the server does not start.
    Sizing follows the plan (pgtune's web profile) unless pg_settings says otherwise.
    """
    for rel in repo.pg_confs():
        ram = _ram_bytes(repo, node_of(rel))
        if ram is None:
            continue
        settings = effective.pg(repo, rel).settings
        shared = settings.get("shared_buffers")
        size = pg_bytes(shared.value, "kb", 8) if shared else None
        if shared and size is not None and size > 0.4 * ram:
            yield Problem(rel, shared.line, f"shared_buffers = {shared.value} is {size / ram:.0%} of the plan's "
                                        f"{ram // 1024**2} MB RAM")
        cache = settings.get("effective_cache_size")
        size = pg_bytes(cache.value, "kb", 8) if cache else None
        if cache and size is not None and size > ram:
            yield Problem(rel, cache.line,
                      f"effective_cache_size = {cache.value} exceeds the plan's {ram // 1024**2} MB RAM")


@rule("HAL407", "redis-maxmemory-fits-plan", "warning", "operations")
def redis_maxmemory_fits_plan(repo: Repo) -> Iterator[Problem]:
    """Redis has a maxmemory within 75 % of the plan's RAM.

    Without maxmemory Redis grows until the kernel's OOM killer ends it; a
    background save (fork) needs headroom for copy-on-write on top of it.
    """
    for rel in repo.redis_confs():
        limit = effective.redis(repo, rel).last("maxmemory")
        if limit is None or limit.args in {("0",), ()}:
            yield Problem(rel, limit.line if limit else 1, "no maxmemory: Redis can grow into the OOM killer")
            continue
        ram = _ram_bytes(repo, node_of(rel))
        size = pg_bytes(limit.args[0].lower().replace("mb", "MB").replace("gb", "GB").replace("kb", "kB"))
        if ram and size and size > 0.75 * ram:
            yield Problem(rel, limit.line, f"maxmemory {limit.args[0]} is {size / ram:.0%} of the plan's "
                                       f"{ram // 1024**2} MB RAM")


@rule("HAL408", "backups-scheduled", "error", "operations")
def backups_scheduled(repo: Repo) -> Iterator[Problem]:
    """Every DB node archives WAL and has a scheduled full backup with a retention; every Redis node a scheduled dump.

    The seed promised backups and scheduled none. A backup job that is
    missing on the node that becomes primary after a failover stops backups
    silently, so every node carries the schedule and it acts on the primary only.
    """
    for rel in repo.pg_confs():
        node = node_of(rel)
        settings = effective.pg(repo, rel).settings
        mode, command = settings.get("archive_mode"), settings.get("archive_command")
        if mode is None or mode.value not in {"on", "always"} or not (command and command.value.strip()):
            yield Problem(rel, mode.line if mode else 1, "WAL archiving is off: no point-in-time recovery")
        if not any(re.search(r"pg-backup\S* full", command) for _, _, command in repo.scheduled(node)):
            yield Problem(f"nodes/{node}/etc/systemd/system", 0, f"{node} schedules no full PostgreSQL backup "
                          "(no timer starts a service that runs pg-backup full)")
        conf = repo.one(node, r"etc/pgbackrest/pgbackrest\.conf")
        if conf is None or not re.search(r"^repo\d+-retention-full\s*=\s*\d+", repo.text(conf), re.M):
            yield Problem(conf or f"nodes/{node}/etc/pgbackrest", 0,
                          "no repo1-retention-full: backups are never expired")
    for rel in repo.redis_confs():
        node = node_of(rel)
        if not any("redis-backup" in command for _, _, command in repo.scheduled(node)):
            yield Problem(f"nodes/{node}/etc/systemd/system", 0, f"{node} schedules no Redis backup "
                          "(no timer starts a service that runs redis-backup)")


@rule("HAL413", "scheduled-jobs", "error", "operations")
def scheduled_jobs(repo: Repo) -> Iterator[Problem]:
    """Every timer catches up after downtime and starts a oneshot service with a time limit.

    A oneshot service stays failed after a failed run until one succeeds, and
    node_exporter exports that state and each timer's last run (the alerts
    UnitFailed and JobLate); a service of another type counts as done as soon
    as it starts, so a failure shows nowhere. `Persistent=true` runs a job
    missed while the node was off; `TimeoutStartSec=` ends a hung run (a
    oneshot has no limit otherwise, and it blocks every later run). Restore
    the generated units.
    """
    for node in repo.node_dirs:
        for timer, service, command in repo.scheduled(node):
            entries = repo.unit(timer)[0]
            keys = {e.key: e.value for e in entries if e.section == "Timer"}
            if "OnCalendar" not in keys:
                yield Problem(timer, 0, "no OnCalendar=: the timer never starts its job")
            if keys.get("Persistent") not in {"true", "yes", "1", "on"}:
                yield Problem(timer, repo.line_of(timer, r"^\[Timer\]"), "no Persistent=true: a run missed "
                              "while the node was off never happens")
            if not command:
                yield Problem(timer, 0, f"starts {service.rsplit('/', 1)[1]}, which is not in the repo")
                continue
            unit = {(e.section, e.key): e.value for e in repo.unit(service)[0]}
            if unit.get(("Service", "Type")) != "oneshot":
                yield Problem(service, 0, "not Type=oneshot: the timer counts the job done as soon as it starts, "
                              "and a failure shows nowhere")
            if not unit.get(("Service", "TimeoutStartSec")):
                yield Problem(service, 0, "no TimeoutStartSec=: a hung run is never ended (a oneshot has no "
                              "time limit) and blocks every later run")


_CONFLICT = re.compile(r"^(<{7}|>{7})( |$)", re.M)


@rule("HAL409", "merge-leftovers", "error", "operations")
def merge_leftovers(repo: Repo) -> Iterator[Problem]:
    """No conflict markers or .rej/.orig files are left over from a copier update or a merge.

    copier update leaves conflicts inline (or as .rej files); a config with
    '<<<<<<<' in it breaks the service that reads it at the next restart.
    Resolve the conflict, delete the leftover.
    """
    for rel in repo.files:
        if rel.endswith((".rej", ".orig")):
            yield Problem(rel, 0, "leftover from a conflicting update or merge")
            continue
        match = _CONFLICT.search(repo.text(rel))
        if match:
            yield Problem(rel, repo.text(rel)[: match.start()].count("\n") + 1, "conflict marker")
