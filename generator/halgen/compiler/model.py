"""The typed model of a stack, derived from complete, valid answers.

Everything a template needs that is not a plain answer is computed here
(node names, the IP plan, ports, sizing, prices), so templates stay dumb.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from halgen.compiler import resources
from halgen.compiler.answers import Answers
from halgen.formats import cron

ROLES = ("lb", "app", "db", "redis", "mon")
ROLE_TITLES = {"lb": "nginx + HAProxy load balancer", "app": "PSGI app server", "db": "PostgreSQL", "redis": "Redis",
               "mon": "Prometheus + Alertmanager monitoring"}
# The PSGI servers an app server can run (answer app_server), by the name people know them.
APP_SERVER_TITLES = {"starlet": "Starlet", "starman": "Starman"}
# Where each role's addresses start in the subnet (offset from the network address).
# Fixed blocks keep every other node's address stable when one tier scales.
ROLE_OFFSETS = {"lb": 10, "db": 20, "redis": 30, "app": 40, "mon": 5}
SSH_PORT, HTTP_PORT, HTTPS_PORT = 22, 80, 443
PG_PORT, REDIS_PORT, SENTINEL_PORT = 5432, 6379, 26379
# Patroni's REST API (its peers, patronictl and the health checks ask it who leads),
# and etcd's client and peer ports: the stock ports of each.
PATRONI_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT = 8008, 2379, 2380
# Monitoring (issue 18): the stock ports of each program. node_exporter and, on load
# balancers, the nginx exporter and mtail listen on the VPC address for the monitoring
# node; Prometheus, Alertmanager and the exporters on the monitoring node listen on its
# loopback only (an operator reaches them through an SSH tunnel to that node).
NODE_EXPORTER_PORT, NGINX_EXPORTER_PORT, MTAIL_PORT = 9100, 9113, 3903
PROMETHEUS_PORT, ALERTMANAGER_PORT, BLACKBOX_PORT = 9090, 9093, 9115
POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT = 9187, 9121  # the first DB node's; each next one +1
# nginx's stub_status (connections, requests) for the nginx exporter, on the node's loopback.
NGINX_STATUS_PORT = 8405
# Settings Patroni sets on PostgreSQL's command line (besides the fixed replication ones).
PATRONI_CMDLINE_SETTINGS = ("max_worker_processes", "max_locks_per_transaction", "max_prepared_transactions",
                            "track_commit_timestamp", "wal_keep_size")
# With TLS on two load balancers, an ACME challenge may reach the one that did not ask for
# it; that one relays it to the other, which serves its challenge files on this VPC port.
ACME_RELAY_PORT = 8402
# Each load balancer's nginx hands requests for the app to HAProxy on this loopback port
# of the same node; HAProxy balances them over the app server instances (issue 15).
BALANCER_PORT = 8404
# HAProxy closes a connection to an app server after this many requests: a prefork worker
# on a kept-alive connection accepts no other one (Starman has no limit of its own).
BALANCER_MAX_REUSE = 100
# Starlet closes a kept-alive connection after this many requests (its default, 1, turns
# keep-alive off); above BALANCER_MAX_REUSE, so HAProxy is the one that decides.
STARLET_MAX_KEEPALIVE_REQS = 1000
# Seconds a request may wait in HAProxy's queue for a free app server worker; then 503.
BALANCER_QUEUE_TIMEOUT_S = 10
# Where a rehearsal's ACME server (pebble) answers: its directory URL.
REHEARSAL_ACME_PORT = 14000
RESERVED_HEAD = 2  # Linode: never use the first two ...
RESERVED_TAIL = 2  # ... or the last two addresses of a VPC subnet


@dataclass(frozen=True)
class Plan:
    type: str
    label: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    monthly: float


@dataclass(frozen=True)
class Paths:
    """Absolute paths on one node. A rehearsal on one machine puts each node under
    its own prefix; on Linode the prefix is empty. Binaries are never prefixed."""

    root: str
    nginx_conf_dir: str
    nginx_log_dir: str
    run_dir: str
    app_root: str
    app_current: str
    app_conf_dir: str
    letsencrypt_dir: str
    letsencrypt_work_dir: str
    letsencrypt_log_dir: str
    acme_root: str
    nginx_tls_dir: str
    pg_conf_dir: str
    pg_data: str
    pg_home: str
    pg_run_dir: str
    pg_log_dir: str
    pg_bin: str
    redis_conf_dir: str
    redis_data: str
    redis_run_dir: str
    pgbackrest_conf_dir: str
    pgbackrest_log_dir: str
    pgbackrest_lock_dir: str
    ca_file: str
    stack_ca_file: str
    pg_cert_file: str
    pg_key_file: str
    redis_cert_file: str
    redis_key_file: str
    etcd_env_file: str
    etcd_data: str
    etcd_cert_file: str
    etcd_key_file: str
    patroni_conf: str
    sbin: str
    cron_dir: str
    log_dir: str
    lock_dir: str
    scratch_dir: str
    textfile_dir: str
    haproxy_chroot: str

    @classmethod
    def for_root(cls, root: str, project: str, pg_version: int) -> Paths:
        cluster = f"{pg_version}/main"
        return cls(
            root=root,
            nginx_conf_dir=f"{root}/etc/nginx",
            nginx_log_dir=f"{root}/var/log/nginx",
            run_dir=f"{root}/run",
            app_root=f"{root}/srv/{project}",
            app_current=f"{root}/srv/{project}/current",
            app_conf_dir=f"{root}/etc/{project}",
            letsencrypt_dir=f"{root}/etc/letsencrypt",
            letsencrypt_work_dir=f"{root}/var/lib/letsencrypt",
            letsencrypt_log_dir=f"{root}/var/log/letsencrypt",
            acme_root=f"{root}/var/www/letsencrypt",
            nginx_tls_dir=f"{root}/etc/nginx/tls",
            pg_conf_dir=f"{root}/etc/postgresql/{cluster}",
            pg_data=f"{root}/var/lib/postgresql/{cluster}",
            pg_home=f"{root}/var/lib/postgresql",
            pg_run_dir=f"{root}/var/run/postgresql",
            pg_log_dir=f"{root}/var/log/postgresql",
            pg_bin=f"/usr/lib/postgresql/{pg_version}/bin",
            redis_conf_dir=f"{root}/etc/redis",
            redis_data=f"{root}/var/lib/redis",
            redis_run_dir=f"{root}/run/redis",
            pgbackrest_conf_dir=f"{root}/etc/pgbackrest",
            pgbackrest_log_dir=f"{root}/var/log/pgbackrest",
            pgbackrest_lock_dir=f"{root}/run/pgbackrest",
            ca_file=f"{root}/etc/ssl/certs/ca-certificates.crt",
            # TLS inside the VPC (halgen.compiler.stackca): the stack CA's certificate every
            # client trusts, and each server's own key pair where only that server reads it.
            stack_ca_file=f"{root}/etc/{project}/tls/ca.crt",
            pg_cert_file=f"{root}/etc/postgresql/{cluster}/server.crt",
            pg_key_file=f"{root}/etc/postgresql/{cluster}/server.key",
            redis_cert_file=f"{root}/etc/redis/tls/server.crt",
            redis_key_file=f"{root}/etc/redis/tls/server.key",
            # Debian's etcd unit reads its settings from /etc/default/etcd; the data
            # directory is the stack's own (the package's first start made 'default').
            etcd_env_file=f"{root}/etc/default/etcd",
            etcd_data=f"{root}/var/lib/etcd/{project}",
            etcd_cert_file=f"{root}/etc/etcd/tls/server.crt",
            etcd_key_file=f"{root}/etc/etcd/tls/server.key",
            patroni_conf=f"{root}/etc/patroni/config.yml",
            sbin=f"{root}/usr/local/sbin",
            cron_dir=f"{root}/etc/cron.d",
            log_dir=f"{root}/var/log/{project}",
            lock_dir=f"{root}/run/lock",
            scratch_dir=f"{root}/var/tmp/{project}",
            # node_exporter's textfile collector (the Debian package's directory): jobs and
            # backups write their metrics here
            textfile_dir=f"{root}/var/lib/prometheus/node-exporter",
            haproxy_chroot=f"{root}/var/lib/haproxy",
        )


@dataclass(frozen=True)
class Target:
    """Where a render runs: Linode (the default) or one machine for a rehearsal.

    A rehearsal swaps the VPC subnet for a loopback one and puts every node's
    files under ``prefix/<node>``; nothing else may differ.
    """

    loopback_subnet: str = ""
    prefix: str = ""

    @property
    def is_rehearsal(self) -> bool:
        return bool(self.loopback_subnet)

    def node_root(self, node: str) -> str:
        return f"{self.prefix}/{node}" if self.prefix else ""

    @property
    def object_storage_address(self) -> str:
        """Where a rehearsal's S3-compatible server listens: just below the loopback
        subnet, so it can never collide with a node."""
        return str(ipaddress.IPv4Network(self.loopback_subnet).network_address - 2)

    @property
    def acme_address(self) -> str:
        """Where a rehearsal's ACME server (pebble) listens: below the object storage address."""
        return str(ipaddress.IPv4Network(self.loopback_subnet).network_address - 3)

    def local_address(self, address: str) -> str:
        """Where a service only its own node talks to listens: the loopback address, or in
        a rehearsal (one loopback for every node) the node's own address."""
        return address if self.is_rehearsal else "127.0.0.1"

    def client_address(self, address: str) -> str:
        """The address a node's outgoing connections come from. On one machine
        every loopback connection comes from 127.0.0.1, whatever the node."""
        return "127.0.0.1" if self.is_rehearsal else address


LINODE = Target()


def ssh_repo_host(url: str) -> str | None:
    """The host of an SSH git URL (user@host:path); None for https:// or none."""
    if not url or url.startswith("https://"):
        return None
    return url.split("@", 1)[1].split(":", 1)[0]


@dataclass(frozen=True)
class AppInstance:
    node: str
    index: int
    address: str
    port: int
    unit: str
    weight: int

    @property
    def listen(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Job:
    """A scheduled job of one node: a systemd timer starts its oneshot service
    (<project>-<name>.service); systemd never starts a unit that is still running, so
    runs cannot overlap."""

    name: str  # pg-backup-full: the units' names after the project, and the metrics' label
    description: str
    command: str  # the service's ExecStart
    schedule: str  # cron fields, as answered
    delay_s: int  # RandomizedDelaySec: nodes and stacks do not hit the bucket at once
    timeout_s: int  # TimeoutStartSec: a run that takes longer is killed and counts as failed

    @property
    def calendar(self) -> tuple[str, ...]:
        """OnCalendar values (a timer fires on any of them)."""
        return cron.on_calendar(self.schedule)

    @property
    def late_after_s(self) -> int:
        """How old its last success may be before the job is late: the longest gap
        between two scheduled runs, plus the random delay and the longest run."""
        return cron.longest_gap_s(self.schedule) + self.delay_s + self.timeout_s


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    index: int
    hostname: str
    address: str
    plan: Plan
    monthly: float
    paths: Paths
    client_address: str
    sentinel: bool = False
    etcd: bool = False  # a member of the etcd cluster Patroni keeps its leader lock in
    patroni: bool = False  # a DB node whose PostgreSQL Patroni manages
    instances: tuple[AppInstance, ...] = ()
    exporters: tuple[str, ...] = ()  # its monitoring units (node_exporter, ...; Prometheus on the monitoring node)

    @property
    def role_title(self) -> str:
        if self.role == "db":
            return "PostgreSQL primary" if self.index == 1 else "PostgreSQL replica"
        if self.role == "redis":
            return "Redis master" if self.index == 1 else "Redis replica"
        return ROLE_TITLES[self.role]

    @property
    def services(self) -> tuple[str, ...]:
        base = {"lb": ("haproxy", "nginx"), "app": tuple(i.unit for i in self.instances),  # <project>-app-<port>
                "db": ("patroni",) if self.patroni else ("postgresql",), "redis": ("redis-server",),
                "mon": ()}[self.role]
        return (base + (("redis-sentinel",) if self.sentinel else ()) + (("etcd",) if self.etcd else ())
                + self.exporters)

    @property
    def is_primary(self) -> bool:
        """The initial PostgreSQL primary or Redis master (index 1 of its role)."""
        return self.index == 1


@dataclass(frozen=True)
class Stack:
    a: Answers  # the complete answers, defaults filled in
    project: str
    subnet: str
    nodes: tuple[Node, ...]
    paths: Paths
    prices_as_of: str
    object_storage_monthly: float
    backup_bucket: str
    halgen_version: str
    target: Target
    pg: dict[str, str]  # sized and overridden postgresql.conf settings (same plan on every DB node)
    redis_maxmemory_mb: int
    by_role: dict[str, tuple[Node, ...]] = field(default_factory=dict)

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles that have nodes (no monitoring node without monitoring)."""
        return tuple(role for role in ROLES if self.by_role[role])

    @property
    def lbs(self) -> tuple[Node, ...]:
        return self.by_role["lb"]

    @property
    def apps(self) -> tuple[Node, ...]:
        return self.by_role["app"]

    @property
    def dbs(self) -> tuple[Node, ...]:
        return self.by_role["db"]

    @property
    def redis(self) -> tuple[Node, ...]:
        return self.by_role["redis"]

    @property
    def mons(self) -> tuple[Node, ...]:
        return self.by_role["mon"]

    @property
    def sentinels(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.sentinel)

    @property
    def instances(self) -> tuple[AppInstance, ...]:
        return tuple(i for n in self.apps for i in n.instances)

    @property
    def nginx_workers(self) -> int:
        return self.lbs[0].plan.vcpus

    @property
    def total_app_workers(self) -> int:
        return len(self.instances) * self.a.app_workers

    @property
    def app_server_title(self) -> str:
        return APP_SERVER_TITLES[self.a.app_server]

    starlet_max_keepalive_reqs = STARLET_MAX_KEEPALIVE_REQS

    # --- balancing (nginx -> HAProxy on the same node -> the app servers) ---------------
    balancer_max_reuse = BALANCER_MAX_REUSE
    balancer_queue_timeout_s = BALANCER_QUEUE_TIMEOUT_S

    def balancer_listen(self, lb: Node) -> str:
        return f"{self.target.local_address(lb.address)}:{BALANCER_PORT}"

    @property
    def balancer_maxconn(self) -> int:
        """Requests one load balancer sends one app server instance at a time: one worker
        fewer than it has, so HAProxy's health check always finds a free worker (a prefork
        worker serves one kept-alive connection at a time); the rest wait in HAProxy's
        queue, where whichever instance frees a worker first takes them."""
        return max(1, self.a.app_workers - 1)

    @property
    def balancer_pool_max(self) -> int:
        """Idle connections one load balancer keeps to one instance: every load balancer's
        idle connections together leave a worker free."""
        return max(1, (self.a.app_workers - 1) // len(self.lbs))

    @property
    def balancer_retries(self) -> int:
        return self.a.lb_next_upstream_tries - 1

    @property
    def balancer_check_down_interval_ms(self) -> int:
        """A failed instance comes back after two passing checks this far apart."""
        return max(1000, self.a.lb_fail_timeout_s * 500)

    @property
    def lb_keepalive(self) -> int:
        """Idle connections each nginx worker keeps to its own HAProxy: the answer, or 32."""
        return int(self.a.lb_keepalive) or 32

    @property
    def monthly_total(self) -> float:
        return round(sum(n.monthly for n in self.nodes) + self.object_storage_monthly, 2)

    @property
    def canonical_domain(self) -> str:
        return self.a.domains[0]

    @property
    def acme_directory(self) -> str:
        """The ACME server certbot uses: the answer, or a rehearsal's own pebble."""
        if self.target.is_rehearsal:
            return f"https://{self.target.acme_address}:{REHEARSAL_ACME_PORT}/dir"
        return self.a.acme_directory

    @property
    def tls_lbs(self) -> tuple[Node, ...]:
        """Load balancers that get a certificate from the ACME server (lb_tls)."""
        return self.lbs if self.a.lb_tls else ()

    @property
    def acme_relay(self) -> bool:
        """Load balancers relay ACME challenges to each other (TLS on more than one)."""
        return bool(self.a.lb_tls) and len(self.lbs) > 1

    def acme_peer(self, lb: Node) -> Node:
        """The load balancer that relays ACME challenges to ``lb`` (there are at most two)."""
        return next(other for other in self.lbs if other.name != lb.name)

    @property
    def ssh_open_to_internet(self) -> bool:
        """admin_cidrs together cover every IPv4 address (only with admin_cidrs_allow_internet)."""
        return covers_internet(self.a.admin_cidrs)

    @property
    def server_names_hash_bucket_size(self) -> int | None:
        """nginx's bucket size for the longest server name, None when the default (64)
        holds it. An entry takes a pointer, the name plus 2 bytes rounded up to 8, and each
        bucket ends with a pointer: names of 47+ characters overflow 64 and nginx refuses
        to start."""
        needed = 16 + (max(len(d) for d in self.a.domains) + 2 + 7) // 8 * 8
        size = 64
        while size < needed:
            size *= 2
        return size if size > 64 else None

    # --- data tier -------------------------------------------------------
    pg_port = PG_PORT
    redis_port = REDIS_PORT
    acme_relay_port = ACME_RELAY_PORT
    sentinel_port = SENTINEL_PORT
    replication_user = "replicator"
    rewind_user = "rewinder"  # pg_rewind's role: Patroni rewinds a failed primary to follow the new one
    patroni_port = PATRONI_PORT
    etcd_client_port = ETCD_CLIENT_PORT
    etcd_peer_port = ETCD_PEER_PORT

    @property
    def patroni(self) -> bool:
        """Patroni manages PostgreSQL and fails it over (pg_failover: patroni)."""
        return self.a.pg_failover == "patroni"

    @property
    def patroni_dcs_parameters(self) -> dict[str, str]:
        """The settings Patroni passes on PostgreSQL's command line from its cluster-wide
        configuration in etcd (they must agree on every member, so they live there):
        unset there, Patroni would start PostgreSQL with its own defaults instead of the
        postgresql.conf values. The same values as postgresql.conf."""
        senders = str(len(self.dbs) + 5)
        fixed = {"max_connections": str(self.a.pg_max_connections), "max_wal_senders": senders,
                 "max_replication_slots": senders, "wal_level": "replica", "wal_log_hints": "on",
                 "hot_standby": "on"}
        sized = {name: self.pg[name] for name in PATRONI_CMDLINE_SETTINGS if name in self.pg}
        return {**fixed, **sized}

    @property
    def patroni_dbs(self) -> tuple[Node, ...]:
        return self.dbs if self.patroni else ()

    @property
    def manual_dbs(self) -> tuple[Node, ...]:
        """DB nodes a person fails over (pg_failover: manual): they carry the replica bootstrap script."""
        return () if self.patroni else self.dbs

    @property
    def etcd_members(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.etcd)

    etcd_credentials = "/run/credentials/etcd.service"  # where systemd hands etcd its key pair (LoadCredential)

    @property
    def etcd_client_hosts(self) -> str:
        return ",".join(f"{n.address}:{self.etcd_client_port}" for n in self.etcd_members)

    def etcd_url(self, node: Node, port: int) -> str:
        return f"{'https' if self.a.vpc_tls else 'http'}://{node.address}:{port}"

    @property
    def etcd_initial_cluster(self) -> str:
        return ",".join(f"{n.name}={self.etcd_url(n, self.etcd_peer_port)}" for n in self.etcd_members)

    @property
    def patroni_scheme(self) -> str:
        return "https" if self.a.vpc_tls else "http"

    @property
    def redis_master_name(self) -> str:
        """The name Sentinels and clients use for the Redis master."""
        return self.project

    @property
    def sentinel_quorum(self) -> int:
        return len(self.sentinels) // 2 + 1

    @property
    def sync_standby_names(self) -> str:
        """ANY 1 over every DB node: a node never waits for itself, so after a
        failover the same setting still names the remaining replicas."""
        if self.a.pg_replication != "sync":
            return ""
        return "ANY 1 (" + ", ".join(n.name for n in self.dbs) + ")"

    def pg_dsn(self, read_only: bool = False, client: Node | None = None) -> str:
        """DBI DSN over every DB node; libpq finds the primary (or a standby for reads), over
        TLS, and checks each node's certificate against the stack CA and its address.
        ``client``: the app server whose CA file it names (a rehearsal puts each node's
        files under its own prefix); by default the path on a real node."""
        hosts = ",".join(n.address for n in self.dbs)
        ports = ",".join(str(self.pg_port) for _ in self.dbs)
        attrs = "prefer-standby" if read_only else "read-write"
        paths = client.paths if client else self.paths
        dsn = (f"dbi:Pg:dbname={self.a.pg_database};host={hosts};port={ports};"
               f"target_session_attrs={attrs};connect_timeout=3;")
        return dsn + (f"sslmode=verify-full;sslrootcert={paths.stack_ca_file}" if self.a.vpc_tls else "sslmode=disable")

    @property
    def pg_sslmode(self) -> str:
        """libpq's connection options of a replica or script, PostgreSQL's TLS included."""
        return "sslmode=verify-full" if self.a.vpc_tls else "sslmode=disable"

    @property
    def tls_servers(self) -> tuple[Node, ...]:
        """Nodes that serve TLS inside the VPC and so get a certificate from the stack CA."""
        if not self.a.vpc_tls:
            return ()
        return tuple(n for n in self.nodes if n.role in ("db", "redis") or n.sentinel or n.etcd)

    @property
    def tls_dbs(self) -> tuple[Node, ...]:
        """PostgreSQL nodes with a certificate (vpc_tls)."""
        return tuple(n for n in self.tls_servers if n.role == "db")

    @property
    def tls_redis_nodes(self) -> tuple[Node, ...]:
        """Nodes whose Redis or Sentinel has a certificate (vpc_tls)."""
        return tuple(n for n in self.tls_servers if n.role == "redis" or n.sentinel)

    @property
    def tls_etcd_nodes(self) -> tuple[Node, ...]:
        """etcd members that get a certificate for etcd alone: those without a PostgreSQL or
        Redis one to share (see etcd_tls_files)."""
        return tuple(n for n in self.tls_servers if n.etcd and n.role != "db" and n not in self.tls_redis_nodes)

    def etcd_tls_files(self, node: Node) -> tuple[str, str]:
        """The certificate and key an etcd member presents (vpc_tls): the node's PostgreSQL or
        Redis pair when it has one (same node, same names), else its own. etcd.service
        reads them as systemd credentials, so their owner needs no change."""
        p = node.paths
        if node.role == "db":
            return p.pg_cert_file, p.pg_key_file
        if node in self.tls_redis_nodes:
            return p.redis_cert_file, p.redis_key_file
        return p.etcd_cert_file, p.etcd_key_file

    @property
    def redis_and_sentinel_nodes(self) -> tuple[Node, ...]:
        """Nodes that run Redis or a Sentinel (a Sentinel may sit on an app or DB node)."""
        return tuple(n for n in self.nodes if n.role == "redis" or n.sentinel)

    # --- monitoring (Prometheus on the monitoring node) ------------------------------
    node_exporter_port = NODE_EXPORTER_PORT
    nginx_exporter_port = NGINX_EXPORTER_PORT
    mtail_port = MTAIL_PORT
    prometheus_port = PROMETHEUS_PORT
    alertmanager_port = ALERTMANAGER_PORT
    blackbox_port = BLACKBOX_PORT
    redis_exporter_port = REDIS_EXPORTER_PORT
    nginx_status_port = NGINX_STATUS_PORT
    # How often Prometheus scrapes and evaluates the rules: short enough that an alert with
    # 'for: 30s' fires within ~45 s of a failure (one lost scrape forgiven); Prometheus' own
    # default of 1 minute would make that 2-3 minutes.
    scrape_interval_s = 15
    monitor_user = "monitor"  # PostgreSQL role and Redis/Sentinel ACL user of the exporters (read-only)

    @property
    def monitored(self) -> tuple[Node, ...]:
        """Nodes that run node_exporter (every node, with monitoring)."""
        return self.nodes if self.mons else ()

    @property
    def monitored_lbs(self) -> tuple[Node, ...]:
        return self.lbs if self.mons else ()

    def exporter_address(self, node: Node) -> str:
        """Where a node's exporters listen: its VPC address; the monitoring node's loopback."""
        return self.target.local_address(node.address) if node.role == "mon" else node.address

    def mon_local(self, port: int) -> str:
        """host:port of a program on the monitoring node that only the node itself reaches."""
        return f"{self.target.local_address(self.mons[0].address)}:{port}"

    def postgres_exporter_port(self, db: Node) -> int:
        """One PostgreSQL exporter per DB node runs on the monitoring node: the first on the stock port."""
        return POSTGRES_EXPORTER_PORT + db.index - 1

    @property
    def certificate_probes(self) -> tuple[tuple[Node, int], ...]:
        """Where the monitoring node reads the expiry of the stack CA's certificates (vpc_tls):
        a port of each node that a plain TLS handshake reaches with that node's certificate
        (Patroni's API, Redis, Sentinel). PostgreSQL's TLS starts inside its own protocol,
        and etcd wants a client certificate, so a node with only those is not probed."""
        probes = []
        for node in self.tls_servers:
            port = (self.patroni_port if node.patroni else self.redis_port if node.role == "redis"
                    else self.sentinel_port if node.sentinel else 0)
            if port:
                probes.append((node, port))
        return tuple(probes)

    @property
    def alert_email_from(self) -> str:
        return self.a.alert_email_from or f"alertmanager@{self.canonical_domain}"

    def backup_late_after_s(self, kind: str) -> int:
        """How old the newest backup in the bucket may be before HalgenBackupTooOld fires: the
        longest gap between the kind's scheduled backups (PostgreSQL: full and differential
        together) plus their random delay and longest run."""
        jobs = [j for j in self.jobs(self.dbs[0] if kind == "pg" else self.redis[0]) if "backup" in j.name]
        gap = cron.longest_gap_s(*(j.schedule for j in jobs))
        return gap + max(j.delay_s + j.timeout_s for j in jobs)

    # --- the app's code -------------------------------------------------------
    @property
    def deploy_key_apps(self) -> tuple[Node, ...]:
        """App servers that clone app_repo over SSH with the stack's read-only deploy key."""
        return self.apps if ssh_repo_host(self.a.app_repo) else ()

    @staticmethod
    def git_ssh_command(paths: Paths) -> str:
        """How git reaches an SSH app_repo: the deploy key only, the answers' host keys only."""
        return (f"ssh -i {paths.app_conf_dir}/deploy-key -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={paths.app_conf_dir}/git-known-hosts")

    @property
    def tls_clients(self) -> tuple[Node, ...]:
        """Nodes that connect to a TLS server inside the VPC and so trust the stack CA."""
        return tuple(n for n in self.nodes if n.role != "lb" or n.etcd) if self.a.vpc_tls else ()

    # --- scheduled jobs ----------------------------------------------------------
    def jobs(self, node: Node) -> tuple[Job, ...]:
        """The node's scheduled jobs. Every DB and Redis node has the backup jobs (they act
        on the current primary or master only), so none stops after a failover."""
        a, run = self.a, f"{node.paths.sbin}/{self.project}"
        hour = 3600
        found: list[Job] = []
        if node.role == "db":
            found.append(Job("pg-backup-full", "full PostgreSQL backup to Object Storage", f"{run}-pg-backup full",
                             a.backup_schedule, 900, 12 * hour))
            if a.backup_diff_schedule:
                found.append(Job("pg-backup-diff", "differential PostgreSQL backup to Object Storage",
                                 f"{run}-pg-backup diff", a.backup_diff_schedule, 900, 6 * hour))
            if node == self.verify_node:
                found.append(Job("pg-verify", "restore test of the latest PostgreSQL backup", f"{run}-pg-verify",
                                 a.backup_verify_schedule, 900, 6 * hour))
        if node.role == "redis":
            found.append(Job("redis-backup", "Redis snapshot to Object Storage", f"{run}-redis-backup",
                             a.redis_backup_schedule, 300, hour))
        if node.role == "mon":
            found.append(Job("deadman", "ping of the external dead man's switch while alerting works",
                             f"{run}-deadman", "* * * * *", 0, 60))
        if node in self.tls_lbs:
            # Until the first certificate is issued (the names may point here only later);
            # afterwards it does nothing and certbot's own timer renews.
            found.append(Job("tls-issue", "first TLS certificate from the ACME server", f"{run}-tls issue",
                             "*/15 * * * *", 0, 600))
        return tuple(found)

    @property
    def job_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if self.jobs(n))

    # --- backups ---------------------------------------------------------------
    pgbackrest_stanza = "main"

    @property
    def verify_node(self) -> Node:
        """Where the weekly restore test runs: the first replica, sparing the primary
        (it needs only the bucket); the primary when there is no replica."""
        return self.dbs[1] if len(self.dbs) > 1 else self.dbs[0]

    @property
    def backup_nodes(self) -> tuple[Node, ...]:
        """Nodes that run scheduled backup jobs."""
        return self.dbs + self.redis

    @property
    def object_storage_host(self) -> str:
        """The host backup tools connect to (the endpoint; a loopback address in a rehearsal)."""
        return self.target.object_storage_address if self.target.is_rehearsal else self.a.backup_endpoint

    @property
    def object_storage_region(self) -> str:
        """Linode's S3 region is the endpoint's cluster ID, e.g. us-ord-1."""
        return self.a.backup_endpoint.split(".")[0]

    def client_blocks(self, nodes: Iterable[Node]) -> tuple[tuple[str, str], ...]:
        """(CIDR block, which nodes it holds) for these nodes' addresses: the exact,
        shortest list a pg_hba.conf needs (see exact_blocks). In a rehearsal, where every
        connection comes from one address, each block is that address (so the file has
        the same lines as on Linode)."""
        nodes = tuple(nodes)
        blocks = []
        for block in exact_blocks(n.address for n in nodes):
            network = ipaddress.IPv4Network(block)
            held = [n for n in nodes if ipaddress.IPv4Address(n.address) in network]
            names = held[0].name if len(held) == 1 else f"{held[0].name}-{held[-1].name}"
            source = block if self.target.client_address(held[0].address) == held[0].address else \
                f"{held[0].client_address}/32"
            blocks.append((source, names))
        return tuple(blocks)

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"{n.address}:{self.sentinel_port}" for n in self.sentinels)


def exact_blocks(addresses: Iterable[str]) -> tuple[str, ...]:
    """The fewest IPv4 CIDR blocks that hold exactly these addresses, in address order.

    Firewall and pg_hba lists stay short however many app servers there are
    (the app servers' addresses are consecutive), and admit no address that is
    not in the list: 10.0.0.40-10.0.0.42 is 10.0.0.40/31 + 10.0.0.42/32."""
    networks = ipaddress.collapse_addresses(ipaddress.IPv4Network(a) for a in set(addresses))
    return tuple(str(n) for n in networks)


def covers_internet(cidrs: Iterable[str]) -> bool:
    """Do these IPv4 networks together cover every address (0.0.0.0/1 + 128.0.0.0/1 do)?"""
    networks = [ipaddress.IPv4Network(c, strict=False) for c in cidrs if ":" not in c]
    return list(ipaddress.collapse_addresses(networks)) == [ipaddress.IPv4Network("0.0.0.0/0")]


def listeners(a: Answers) -> dict[str, list[tuple[int, str]]]:
    """Every TCP port each node listens on, with what listens: the one table that says
    which services share a node (Sentinels sit on app or DB nodes when Redis nodes run out)."""
    sentinels = set(sentinel_hosts(a)) if a.redis_mode == "sentinel" else set()
    role_ports: dict[str, list[tuple[int, str]]] = {
        "lb": [(HTTP_PORT, "nginx")] + ([(HTTPS_PORT, "nginx (TLS)")] if a.lb_tls else [])
        + ([(ACME_RELAY_PORT, "nginx (ACME challenge relay)")] if a.lb_tls and a.lb_count > 1 else []),
        "app": [(a.app_port + i, f"app server instance {i + 1}") for i in range(a.app_instances)],
        "db": [(PG_PORT, "PostgreSQL")] + ([(PATRONI_PORT, "Patroni REST API")] if a.pg_failover == "patroni" else []),
        "redis": [(REDIS_PORT, "Redis")],
        "mon": [],  # Prometheus, Alertmanager and its exporters: on its loopback only
    }
    if a.monitoring:
        role_ports["lb"] += [(NGINX_EXPORTER_PORT, "nginx exporter"), (MTAIL_PORT, "mtail (nginx log metrics)")]
    exporter = [(NODE_EXPORTER_PORT, "node_exporter")] if a.monitoring else []
    members = set(etcd_hosts(a))
    return {name: [(SSH_PORT, "sshd"), *role_ports[role]] + ([(SENTINEL_PORT, "Sentinel")] if name in sentinels else [])
            + ([(ETCD_CLIENT_PORT, "etcd (clients)"), (ETCD_PEER_PORT, "etcd (peers)")] if name in members else [])
            + (exporter if role != "mon" else [])
            for role, names in node_names(a).items() for name in names}


def monitoring_units(a: Answers, role: str) -> tuple[str, ...]:
    """The monitoring units of a node of ``role`` (Debian's, but the PostgreSQL exporter's:
    one instance of the stack's own unit per DB node, on the monitoring node)."""
    if not a.monitoring:
        return ()
    units: tuple[str, ...] = ("prometheus-node-exporter",)
    if role == "lb":
        units += ("prometheus-nginx-exporter", "mtail")
    if role == "mon":
        units += ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter", "prometheus-redis-exporter")
        units += tuple(f"{a.project}-postgres-exporter@{db}" for db in node_names(a)["db"])
    return units


def node_names(a: Answers) -> dict[str, list[str]]:
    """Node names by role, in order, for complete answers."""
    counts = {
        "lb": a.lb_count,
        "app": a.app_servers,
        "db": 1 + a.pg_replicas,
        "redis": 1 + (a.redis_replicas if a.redis_mode != "single" else 0),
        "mon": 1 if a.monitoring else 0,
    }
    return {role: [f"{role}{i}" for i in range(1, counts[role] + 1)] for role in ROLES}


def plan_addresses(a: Answers) -> tuple[dict[str, str], list[str]]:
    """Private address per node: fixed ones from the answers, the rest from each role's block.

    Returns the plan and the names that did not fit in the subnet.
    """
    net = ipaddress.IPv4Network(a.vpc_subnet, strict=False)
    first, last = RESERVED_HEAD, net.num_addresses - 1 - RESERVED_TAIL
    fixed = dict(a.node_addresses)
    used = {int(ipaddress.IPv4Address(ip)) - int(net.network_address) for ip in fixed.values()}
    plan: dict[str, str] = {}
    overflow: list[str] = []
    for role, names in node_names(a).items():
        offset = max(ROLE_OFFSETS[role], first)
        for name in names:
            if name in fixed:
                plan[name] = fixed[name]
                continue
            while offset in used:
                offset += 1
            if offset > last:
                overflow.append(name)
                continue
            used.add(offset)
            plan[name] = str(net.network_address + offset)
            offset += 1
    return plan, overflow


def sentinel_hosts(a: Answers) -> list[str]:
    """Sentinels go on distinct nodes: every Redis node first, then app servers, then databases."""
    if a.redis_mode != "sentinel":
        return []
    names = node_names(a)
    candidates = names["redis"] + names["app"] + names["db"]
    return candidates[: a.sentinel_count]


def etcd_hosts(a: Answers) -> list[str]:
    """etcd members, on distinct existing nodes: etcd_nodes when given, else the DB nodes
    (they need the lock most), then app servers (the most numerous, with room to spare),
    then Redis nodes (their memory is sized for Redis) and load balancers. None without Patroni."""
    if a.pg_failover != "patroni":
        return []
    if a.etcd_nodes:
        return list(a.etcd_nodes)
    names = node_names(a)
    return (names["db"] + names["app"] + names["redis"] + names["lb"])[: a.etcd_count]


def _on_loopback(a: Answers, loopback_subnet: str) -> Answers:
    """The same plan on a loopback subnet: every address keeps its offset."""
    old = ipaddress.IPv4Network(a.vpc_subnet, strict=False)
    new = ipaddress.IPv4Network(loopback_subnet)
    pinned = {}
    for name, ip in a.node_addresses.items():
        offset = int(ipaddress.IPv4Address(ip)) - int(old.network_address)
        if offset >= new.num_addresses - RESERVED_TAIL:
            raise ValueError(f"{name}'s address {ip} has no place in {new}; use a larger loopback subnet")
        pinned[name] = str(new.network_address + offset)
    return a.replace(vpc_subnet=str(new), node_addresses=pinned)


@lru_cache(maxsize=16)
def derive(a: Answers, target: Target = LINODE, version: str | None = None) -> Stack:
    """Complete, valid answers -> Stack (cached: templates call it once per file).
    ``version``: the blueprint's release (resources.blueprint_version), else this halgen's."""
    from halgen import __version__
    from halgen.compiler.sizing import PgInputs, pg_settings, redis_maxmemory_mb

    if target.is_rehearsal:
        a = _on_loopback(a, target.loopback_subnet)
    catalogue = resources.price_catalogue()
    multiplier = catalogue["region_multipliers"].get(a.region, 1.0)
    addresses, _ = plan_addresses(a)
    sentinels = set(sentinel_hosts(a))
    members = set(etcd_hosts(a))
    project = a.project
    by_role: dict[str, tuple[Node, ...]] = {}
    plans: dict[str, Plan] = {}
    for role, names in node_names(a).items():
        plan_type = getattr(a, f"{role}_plan")
        plan = plans[role] = Plan(type=plan_type, **catalogue["plans"][plan_type])
        nodes = []
        for index, name in enumerate(names, start=1):
            address = addresses[name]
            instances: tuple[AppInstance, ...] = ()
            if role == "app":
                weight = a.lb_weights.get(name, 1)
                instances = tuple(
                    AppInstance(node=name, index=i, address=address, port=a.app_port + i,
                                    unit=f"{project}-app-{a.app_port + i}", weight=weight)
                    for i in range(a.app_instances)
                )
            nodes.append(Node(
                name=name, role=role, index=index, hostname=f"{project}-{name}", address=address,
                plan=plan, monthly=round(plan.monthly * multiplier, 2),
                paths=Paths.for_root(target.node_root(name), project, a.pg_version),
                client_address=target.client_address(address),
                sentinel=name in sentinels, etcd=name in members,
                patroni=role == "db" and a.pg_failover == "patroni", instances=instances,
                exporters=monitoring_units(a, role),
            ))
        by_role[role] = tuple(nodes)
    db_plan = plans["db"]
    return Stack(
        a=a,
        project=project,
        subnet=str(ipaddress.IPv4Network(a.vpc_subnet, strict=False)),
        nodes=tuple(n for role in ROLES for n in by_role[role]),
        paths=Paths.for_root("", project, a.pg_version),
        prices_as_of=catalogue["as_of"],
        object_storage_monthly=catalogue["object_storage_monthly"],
        backup_bucket=a.backup_bucket or f"{project}-backups",
        halgen_version=version or __version__,
        target=target,
        pg=pg_settings(PgInputs(db_plan.ram_mb, db_plan.vcpus, db_plan.disk_gb, a.pg_max_connections),
                       a.pg_settings),
        redis_maxmemory_mb=redis_maxmemory_mb(plans["redis"].ram_mb, a.redis_persistence),
        by_role=by_role,
    )
