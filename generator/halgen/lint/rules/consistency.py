"""The files agree with each other and with the answers they were made from."""

from __future__ import annotations

import re
from collections.abc import Iterator

from halgen.errors import Problem
from halgen.formats import ufw
from halgen.lint import effective, facts
from halgen.lint.registry import rule
from halgen.lint.repo import Repo, node_of


@rule("HAL201", "upstream-matches-starman", "error", "consistency")
def upstream_matches_starman(repo: Repo) -> Iterator[Problem]:
    """Each load balancer reaches every app server instance (Starman or Starlet) and nothing
    else: nginx's upstream names the node's own HAProxy (or the instances), and HAProxy's
    servers are exactly the instances' listen addresses.

    An instance missing from the balancer never gets traffic (you pay for it
    idle); a server with no app server behind it costs every request that lands
    there a failed connect and a retry; an nginx upstream server that is neither
    leads nowhere. Re-render after changing the number of app servers
    (`halgen scale app N`) rather than editing by hand.
    """
    listeners = {s.endpoint: s for s in facts.app_listeners(repo)}
    for rel in repo.nginx_confs():
        node = node_of(rel)
        balancer = facts.balancer(repo, node)
        reached: set[str] = set()
        servers = facts.upstream_servers(repo, rel)
        missing_at = (rel, servers[0].parents[-1].line if servers else 1)  # nginx's upstream block
        for d in servers:
            if not d.args:
                continue
            if d.args[0] in listeners:
                reached.add(d.args[0])
            elif balancer is not None and d.args[0] in balancer.binds:
                reached.update(line.args[1] for line in balancer.servers)
                missing_at = (balancer.file, balancer.servers[0].line if balancer.servers else 1)
            else:
                yield Problem(rel, d.line, f"upstream server {d.args[0]} is neither an app server instance's listen "
                                           f"address nor {node}'s HAProxy")
        if balancer is not None:
            for line in balancer.servers:
                if line.args[1] not in listeners:
                    yield Problem(balancer.file, line.line,
                                  f"server {line.args[0]} {line.args[1]} is no app server instance's listen address")
        for endpoint, listener in sorted(listeners.items()):
            if endpoint not in reached:
                yield Problem(*missing_at,
                              f"{listener.what} {endpoint} ({listener.file}) is missing from {node}'s balancing")


@rule("HAL202", "firewall-matches-listeners", "error", "consistency")
def firewall_matches_listeners(repo: Repo) -> Iterator[Problem]:
    """Each node's firewall (ufw, in its first-boot script) opens exactly the ports its services listen on, and SSH.

    A listening port the firewall does not open is a service nobody can reach;
    an open port with nothing behind it is an invitation to whatever starts
    listening there later.
    """
    for rel in repo.first_boots():
        node = node_of(rel)
        ufw = effective.firewall(repo, rel).allows
        opened = {port: r.line for r in ufw for port in r.ports}
        # Loopback-only listeners (a stub_status, say) need no firewall rule.
        listening = {x.port: x for x in facts.node_listeners(repo, node) if not facts.is_loopback(x.address)}
        enable = repo.line_of(rel, r"^ufw --force enable")
        for port, listener in sorted(listening.items()):
            if port not in opened:
                yield Problem(rel, enable, f"{listener.what} listens on port {port} ({listener.file}) "
                                       "but no ufw rule allows it")
        for port, line in sorted(opened.items()):
            if port != 22 and port not in listening:
                yield Problem(rel, line, f"ufw opens port {port} but nothing on {node} listens there")


@rule("HAL203", "cloud-firewall-matches-ufw", "error", "consistency")
def cloud_firewall_matches_ufw(repo: Repo) -> Iterator[Problem]:
    """firewalls/<role>.json (the Linode Cloud Firewall) allows the same sources and ports as the nodes' ufw rules.

    The two firewalls are layered: the cloud one drops traffic before it
    reaches a node, ufw on the node is the second wall. When they disagree,
    either a service is unreachable or one of the walls is not doing its job.
    """
    if repo.stack is None:
        return
    for role in repo.stack.roles:
        rel = f"firewalls/{role}.json"
        rules = repo.cloud_firewall(rel)
        if rules is None or not isinstance(rules.get("inbound"), list):
            yield Problem(rel, 1, f"missing or unreadable Cloud Firewall for role {role}")
            continue
        inbound = rules["inbound"]
        cloud = {(str(port), src) for r in inbound if r.get("action") == "ACCEPT"
                 for port in ufw.ports_of(str(r.get("ports", "")))
                 for src in r.get("addresses", {}).get("ipv4", [])}
        cloud = {(p, "any" if s == "0.0.0.0/0" else s) for p, s in cloud}
        # One Cloud Firewall serves every node of the role: it is the union of their ufw rules.
        union: set[tuple[str, str]] = set()
        for node in repo.stack.by_role[role]:
            boot = repo.one(node.name, r"usr/local/sbin/[^/]+-first-boot")
            if boot is None:
                continue
            allows = effective.firewall(repo, boot).allows
            local = {(str(p), r.source) for r in allows for p in r.ports}
            union |= local
            for port, source in sorted(local - cloud):
                yield Problem(rel, 1,
                              f"{node.name}'s ufw allows port {port} from {source}; this Cloud Firewall does not")
        for port, source in sorted(cloud - union):
            yield Problem(rel, 1, f"allows port {port} from {source}, which no {role} node's ufw allows")


@rule("HAL204", "firewall-admits-clients", "error", "consistency")
def firewall_admits_clients(repo: Repo) -> Iterator[Problem]:
    """Each internal port admits every node that must connect to it: load balancers to
    the app servers, app and DB nodes to PostgreSQL, app/Redis/Sentinel nodes to Redis and Sentinel,
    DB nodes to Patroni's REST API and to etcd, etcd members to each other.

    A missing source breaks a path only when it is used: a replica that cannot
    reach a new primary after a failover, an app server added later. Re-render
    so the firewall follows the node list.
    """
    stack = repo.stack
    if stack is None:
        return
    lbs = [n.address for n in stack.lbs]
    apps = [n.address for n in stack.apps]
    dbs = [n.address for n in stack.dbs]
    redis = [n.address for n in stack.redis]
    sentinels = [n.address for n in stack.sentinels]
    members = [n.address for n in stack.etcd_members]
    clients = {"Starman": lbs, "Starlet": lbs, "PostgreSQL": apps + dbs, "Redis": apps + redis + sentinels,
               "Sentinel": apps + sentinels, "Patroni REST API": dbs, "etcd (clients)": dbs + members,
               "etcd (peers)": members}
    for rel in repo.first_boots():
        node = node_of(rel)
        ufw = effective.firewall(repo, rel).allows
        for listener in facts.node_listeners(repo, node):
            for address in clients.get(listener.what, []):
                if address != listener.address and not any(
                        listener.port in r.ports and facts.covers(r.source, address) for r in ufw):
                    yield Problem(rel, repo.line_of(rel, r"^ufw --force enable"),
                              f"{listener.what} port {listener.port} does not admit {address}, which connects to it")


@rule("HAL205", "pg-hba-peers", "error", "consistency")
def pg_hba_peers(repo: Repo) -> Iterator[Problem]:
    """pg_hba.conf admits exactly the DB nodes for replication and pg_rewind, the app servers and the monitoring node.

    A replica missing here cannot stream (or cannot follow a new primary after a
    failover); an address that is no node of the stack, or a block wider than
    the nodes it holds, is a door nobody watches. Every DB node carries the same file so any of them can be primary.
    """
    stack = repo.stack
    if stack is None:
        return
    dbs, apps = {n.client_address for n in stack.dbs}, {n.client_address for n in stack.apps}
    # (database, role) -> the addresses it must admit, and what they are
    expected: dict[tuple[str, str], tuple[set[str], str]] = {
        ("replication", stack.replication_user): (dbs, "DB node"),
        (stack.a.pg_database, stack.a.pg_app_user): (apps, "app server"),
    }
    if stack.patroni:
        expected["postgres", stack.rewind_user] = (dbs, "DB node")  # Patroni's pg_rewind of a failed primary
    if stack.mons:
        expected["postgres", stack.monitor_user] = ({n.client_address for n in stack.mons}, "monitoring node")
    for rel in effective.hba_files(repo):
        entries = effective.hba_entries(repo, rel)[0]
        seen: dict[tuple[str, str], set[str]] = {key: set() for key in expected}
        for entry in entries:
            if entry.type == "local" or entry.method == "reject":
                continue
            key = (entry.database, entry.user)
            wanted, who = expected.get(key, (set(), "node that uses it"))
            hits = {a for a in wanted if facts.covers(entry.address, a)}
            size = facts.block_size(entry.address)
            if not hits:
                yield Problem(rel, entry.line, f"{entry.database} access for {entry.user} from {entry.address}, "
                              f"which is no {who}")
            elif size is not None and size > len(hits):
                yield Problem(rel, entry.line, f"{entry.database} access for {entry.address} admits {size} "
                                           f"addresses, of which only {len(hits)} are {who}s")
            seen.setdefault(key, set()).update(hits)
        for (database, user), (addresses, who) in expected.items():
            for address in sorted(addresses - seen.get((database, user), set())):
                yield Problem(rel, 1, f"no '{database}' line for {user} from {who} {address}")


@rule("HAL206", "replication-slots", "error", "consistency")
def replication_slots(repo: Repo) -> Iterator[Problem]:
    """The primary's setup creates one replication slot per replica, and postgresql.conf has room for them.

    A replica without its slot can fall behind past the WAL the primary keeps
    and must be rebuilt; a slot for a node that does not exist keeps WAL
    forever (up to max_slot_wal_keep_size). synchronous_standby_names must
    name real replicas, or every commit in sync mode waits for nobody.
    """
    stack = repo.stack
    if stack is None:
        return
    all_dbs = {n.name for n in stack.dbs}
    # Under Patroni the slots are Patroni's (one per member, made and dropped as members come and go).
    for rel in [] if stack.patroni else repo.glob(r"nodes/[^/]+/etc/[^/]+/pg-setup\.sql"):
        text = repo.text(rel)
        slots = set(re.findall(r"pg_create_physical_replication_slot\('([^']+)'\)", text))
        # The setup runs on whichever node is primary: a slot for every other DB node.
        replicas = all_dbs - {node_of(rel)}
        for slot in sorted(slots - replicas):
            yield Problem(rel, repo.line_of(rel, re.escape(f"slot('{slot}')")), f"slot {slot} is for no replica")
        for name in sorted(replicas - slots):
            yield Problem(rel, 1, f"no replication slot for replica {name}")
    for rel in repo.pg_confs():
        settings = effective.pg(repo, rel).settings
        for key in ("max_replication_slots", "max_wal_senders"):
            setting = settings.get(key)
            if setting and setting.value.isdigit() and int(setting.value) < len(all_dbs) - 1:
                yield Problem(rel, setting.line, f"{key} = {setting.value} is below the {len(all_dbs) - 1} replica(s)")
        sync = settings.get("synchronous_standby_names")
        if sync and sync.value.strip():
            names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", re.sub(r"^\s*(ANY|FIRST)\s+\d+\s*", "", sync.value)))
            for name in sorted(names - all_dbs - {"ANY", "FIRST"}):
                yield Problem(rel, sync.line, f"synchronous_standby_names names {name}, which is no DB node")


@rule("HAL207", "sentinel-monitors-master", "error", "consistency")
def sentinel_monitors_master(repo: Repo) -> Iterator[Problem]:
    """Every Sentinel monitors the actual Redis master, under the same name, with a majority quorum.

    A Sentinel watching the wrong address never sees the master fail (or fails
    over a healthy one); a quorum below a majority lets a partitioned minority
    promote a second master; above the Sentinel count, no failover ever happens.
    """
    master = facts.redis_master(repo)
    sentinels = repo.sentinel_confs()
    majority = len(sentinels) // 2 + 1
    names = set()
    for rel in sentinels:
        monitor = effective.redis(repo, rel).last("sentinel monitor")
        if monitor is None or len(monitor.args) != 4:
            yield Problem(rel, 1, "no 'sentinel monitor NAME ADDRESS PORT QUORUM' line")
            continue
        name, address, port, quorum = monitor.args
        names.add(name)
        if master and (address, port) != (master[0], str(master[1])):
            yield Problem(rel, monitor.line, f"monitors {address}:{port}, but the Redis master is "
                                         f"{master[0]}:{master[1]} ({master[2]})")
        if not quorum.isdigit() or not majority <= int(quorum) <= len(sentinels):
            yield Problem(rel, monitor.line, f"quorum {quorum} is not a majority of the {len(sentinels)} Sentinels "
                                         f"({majority}..{len(sentinels)})")
    if len(names) > 1:
        yield Problem(sentinels[0], 1, f"Sentinels disagree on the master's name: {', '.join(sorted(names))}")


@rule("HAL208", "redis-replicas-follow-master", "error", "consistency")
def redis_replicas_follow_master(repo: Repo) -> Iterator[Problem]:
    """Exactly one Redis node is the master, and every other one replicates from its address.

    Two masters split the data; a replicaof pointing elsewhere replicates
    nothing. (After a Sentinel failover the servers rewrite these lines
    themselves; the repo holds the initial topology.)
    """
    confs = repo.redis_confs()
    masters = [rel for rel in confs if effective.redis(repo, rel).last("replicaof") is None]
    if confs and len(masters) != 1:
        yield Problem(confs[0], 1, f"{len(masters)} Redis masters (no replicaof): {', '.join(masters) or 'none'}")
        return
    master = facts.redis_master(repo)
    for rel in confs:
        follow = effective.redis(repo, rel).last("replicaof")
        if follow and master and tuple(follow.args) != (master[0], str(master[1])):
            yield Problem(rel, follow.line,
                          f"replicaof {' '.join(follow.args)}, but the master is {master[0]} {master[1]}")


@rule("HAL209", "app-env-names-nodes", "error", "consistency")
def app_env_names_nodes(repo: Repo) -> Iterator[Problem]:
    """The app's DSNs name every DB node (and only those) with their ports and the stack's
    database, and its Sentinel list the real Sentinels.

    The DSN lists every DB node so libpq finds the primary after a failover by
    itself; a missing node is a failover target the app cannot follow to.
    """
    db_endpoints = []
    for rel in repo.pg_confs():
        settings = effective.pg(repo, rel).settings
        listen, port = settings.get("listen_addresses"), settings.get("port")
        if listen:
            db_endpoints.append((listen.value, port.value if port else "5432"))
    sentinels = sorted(f"{a}:{p}" for a, p in (facts.redis_endpoint(repo, r, 26379) or ("", 0)
                                                for r in repo.sentinel_confs()) if a)
    database = repo.answers.pg_database if repo.answers else None
    for rel in repo.app_envs():
        env = repo.env(rel)
        for key in ("PG_DSN", "PG_DSN_READ"):
            if key not in env:
                yield Problem(rel, 1, f"no {key}")
                continue
            hosts, ports, dbname = facts.dsn_hosts(env[key].value)
            ports = ports or ["5432"]  # libpq's default
            pairs = sorted(zip(hosts, ports if len(ports) == len(hosts) else ports[:1] * len(hosts), strict=True))
            if pairs != sorted(db_endpoints):
                yield Problem(rel, env[key].line,
                              f"{key} names {', '.join(f'{h}:{p}' for h, p in pairs)}; the DB nodes "
                                              f"listen on {', '.join(f'{h}:{p}' for h, p in sorted(db_endpoints))}")
            if database and dbname != database:
                yield Problem(rel, env[key].line, f"{key} database is {dbname!r}, the stack's is {database!r}")
        listed = env.get("REDIS_SENTINELS")
        if listed is not None and sorted(listed.value.split(",")) != sentinels:
            yield Problem(rel, listed.line,
                          f"REDIS_SENTINELS is {listed.value}; the Sentinels are {','.join(sentinels)}")


@rule("HAL210", "node-files", "error", "consistency")
def node_files(repo: Repo) -> Iterator[Problem]:
    """Every node in the answers has its files, and no nodes/ directory belongs to no node.

    A node directory left behind after scaling down is still deployable, and
    looks like part of the stack; a node without its files boots bare.
    Use `halgen scale` or `copier update` to add or remove nodes.
    """
    stack = repo.stack
    if stack is None:
        return
    names = {n.name for n in stack.nodes}
    for directory in repo.node_dirs:
        if directory not in names:
            yield Problem(f"nodes/{directory}", 0, f"node directory {directory} belongs to no node of the answers")
    pg = stack.a.pg_version
    for node in stack.nodes:
        needed = ["cloud-init.yaml", f"usr/local/sbin/{stack.project}-first-boot"]
        needed += {"lb": ["etc/nginx/nginx.conf"],
                   "app": [f"etc/{stack.project}/app.env"]
                   + [f"etc/systemd/system/{i.unit}.service" for i in node.instances],
                   "db": [f"etc/postgresql/{pg}/main/postgresql.conf", f"etc/postgresql/{pg}/main/pg_hba.conf"],
                   "redis": ["etc/redis/redis.conf"]}.get(node.role, [])
        if node.sentinel:
            needed.append("etc/redis/sentinel.conf")
        for path in needed:
            if not repo.exists(f"nodes/{node.name}/{path}"):
                yield Problem(f"nodes/{node.name}/{path}", 0, f"missing: {node.name} ({node.role}) needs it")
        if not node.sentinel and repo.exists(f"nodes/{node.name}/etc/redis/sentinel.conf"):
            yield Problem(f"nodes/{node.name}/etc/redis/sentinel.conf", 0, f"{node.name} runs no Sentinel")
        if node.role == "app":
            pattern = r"etc/systemd/system/[^/]+-app-\d+\.service"
            units = {u.rsplit("/", 1)[1] for u in repo.node_files(node.name, pattern)}
            for unit in sorted(units - {f"{i.unit}.service" for i in node.instances}):
                yield Problem(f"nodes/{node.name}/etc/systemd/system/{unit}", 0,
                          "app server unit for no instance of the answers")
