"""Mutated copies of golden repos, one defect each, and the rule that must flag it.

Each rule's failing fixtures are its mutations; its passing fixture is the
unmutated golden case (every golden case lints clean)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutation:
    rule: str
    name: str
    apply: Callable[[Path], None]
    case: str = "default-ha"

    @property
    def id(self) -> str:
        return f"{self.rule}-{self.name}"


def edit(rel: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    """Replace text in one file; the old text must be there, so a mutation cannot rot silently."""

    def apply(root: Path) -> None:
        path = _resolve(root, rel)
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, count))

    return apply


def append(rel: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = _resolve(root, rel)
        path.write_text(path.read_text() + text)

    return apply


def write(rel: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    return apply


def remove(rel: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        import shutil

        path = _resolve(root, rel)
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return apply


def _resolve(root: Path, rel: str) -> Path:
    """rel may hold one glob part (the PostgreSQL version directory, say)."""
    matches = sorted(root.glob(rel))
    assert matches, f"nothing matches {rel} in {root}"
    return matches[0]


LB = "nodes/lb1/etc/nginx/nginx.conf"
PG = "nodes/db1/etc/postgresql/*/main/postgresql.conf"
HBA = "nodes/db1/etc/postgresql/*/main/pg_hba.conf"
REDIS = "nodes/redis1/etc/redis/redis.conf"
REPLICA = "nodes/redis2/etc/redis/redis.conf"
SENTINEL = "nodes/redis1/etc/redis/sentinel.conf"
UNIT = "nodes/app1/etc/systemd/system/shop-starman-5000.service"
DB_BOOT = "nodes/db1/usr/local/sbin/shop-first-boot"
APP_BOOT = "nodes/app1/usr/local/sbin/shop-first-boot"
APP_ENV = "nodes/app1/etc/shop/app.env"
CLOUD = "nodes/db1/cloud-init.yaml"

MUTATIONS = [
    Mutation("HAL001", "invalid-answer", edit(".copier-answers.yml", "app_servers: 3", "app_servers: 0")),
    Mutation("HAL001", "no-answers", remove(".copier-answers.yml")),
    Mutation("HAL101", "typo-directive", edit(LB, "proxy_connect_timeout 2s;", "proxy_conect_timeout 2s;")),
    Mutation("HAL101", "wrong-context", edit(LB, "proxy_http_version 1.1;", "proxy_http_version 1.1;\n            upstream x { }")),
    Mutation("HAL102", "no-header", edit(CLOUD, "#cloud-config", "#cloud-confg")),
    Mutation("HAL102", "bad-yaml", edit(CLOUD, "package_update: true", "package_update: [true")),
    Mutation("HAL103", "no-equals", edit(UNIT, "Restart=on-failure", "Restart on-failure")),
    Mutation("HAL103", "no-execstart", edit(UNIT, "ExecStart=", "#ExecStart=")),
    Mutation("HAL104", "set-twice", append(PG, "shared_buffers = '512MB'\n")),
    Mutation("HAL104", "unbalanced-quote", edit(PG, "work_mem = '5041kB'", "work_mem = '5041kB")),
    Mutation("HAL105", "bad-method", edit(HBA, "10.0.0.40/32            scram-sha-256", "10.0.0.40/32            scram-sha256")),
    Mutation("HAL105", "bad-address", edit(HBA, "10.0.0.40/32", "10.0.0.40/33")),
    Mutation("HAL106", "unknown-directive", edit(REDIS, "appendfsync everysec", "appendfsyncc everysec")),
    Mutation("HAL107", "broken-json", edit("firewalls/db.json", "}", "", count=1)),
    Mutation("HAL201", "missing-server", edit(LB, "        server 10.0.0.42:5000 weight=1 max_fails=3 fail_timeout=10s max_conns=5;\n", "")),
    Mutation("HAL201", "extra-server", edit(LB, "        keepalive 7;", "        server 10.0.0.43:5000;\n        keepalive 7;")),
    Mutation("HAL202", "listener-blocked", edit(DB_BOOT, "ufw allow proto tcp from 10.0.0.20/32 to any port 5432",
                                                "ufw allow proto tcp from 10.0.0.20/32 to any port 5433")),
    Mutation("HAL202", "port-without-listener", edit(APP_BOOT, "ufw --force enable",
                                                     "ufw allow proto tcp from 10.0.0.10/32 to any port 8080\nufw --force enable")),
    Mutation("HAL203", "cloud-source-differs", edit("firewalls/db.json", '"10.0.0.41/32"', '"10.0.0.99/32"')),
    Mutation("HAL204", "lb-not-admitted", edit(APP_BOOT, "from 10.0.0.11/32 to any port 5000", "from 10.0.0.12/32 to any port 5000")),
    Mutation("HAL205", "replica-missing", edit(HBA, "host    replication     replicator      10.0.0.21/32            scram-sha-256\n", "")),
    Mutation("HAL205", "stranger", append(HBA, "host    app             app             10.0.0.99/32            scram-sha-256\n")),
    Mutation("HAL206", "wrong-slot", edit("nodes/db1/etc/shop/pg-setup.sql", "slot('db2')", "slot('db9')")),
    Mutation("HAL206", "too-few-senders", edit(PG, "max_wal_senders = 7", "max_wal_senders = 0")),
    Mutation("HAL207", "minority-quorum", edit(SENTINEL, "sentinel monitor shop 10.0.0.30 6379 2", "sentinel monitor shop 10.0.0.30 6379 1")),
    Mutation("HAL207", "watches-replica", edit(SENTINEL, "sentinel monitor shop 10.0.0.30 6379 2", "sentinel monitor shop 10.0.0.31 6379 2")),
    Mutation("HAL208", "two-masters", edit(REPLICA, "replicaof 10.0.0.30 6379", "# replicaof 10.0.0.30 6379")),
    Mutation("HAL208", "follows-nobody", edit(REPLICA, "replicaof 10.0.0.30 6379", "replicaof 10.0.0.39 6379")),
    Mutation("HAL209", "dsn-misses-node", edit(APP_ENV, "host=10.0.0.20,10.0.0.21;port=5432,5432;target_session_attrs=read-write",
                                               "host=10.0.0.20;port=5432;target_session_attrs=read-write")),
    Mutation("HAL209", "wrong-sentinels", edit(APP_ENV, "REDIS_SENTINELS=10.0.0.40:26379", "REDIS_SENTINELS=10.0.0.44:26379")),
    Mutation("HAL210", "node-missing", remove("nodes/app3")),
    Mutation("HAL210", "stray-node", write("nodes/app9/NODE.md", "# app9\n")),
    Mutation("HAL211", "stale-user-data", edit(LB, "server_tokens off;", "server_tokens off;  # edited by hand")),
    Mutation("HAL301", "http-host", edit(LB, "proxy_set_header Host $host;", "proxy_set_header Host $http_host;")),
    Mutation("HAL302", "location-drops-hsts", edit("nodes/lb1/etc/nginx/nginx.conf", "location = /nginx-health {",
                                                   "location = /nginx-health {\n            add_header X-Probe 1;", count=3),
             case="tls-sync"),
    Mutation("HAL303", "alias-traversal", edit(LB, "location / {\n            proxy_pass",
                                               "location /files {\n            alias /srv/files/;\n        }\n\n        location / {\n            proxy_pass")),
    Mutation("HAL304", "variable-proxy-pass", edit(LB, "proxy_pass http://shop_app;", "proxy_pass http://$arg_backend;")),
    Mutation("HAL305", "tokens-on", edit(LB, "server_tokens off;", "server_tokens on;")),
    Mutation("HAL305", "tokens-unset", edit(LB, "    server_tokens off;\n", "")),
    Mutation("HAL306", "md5", edit(HBA, "10.0.0.40/32            scram-sha-256", "10.0.0.40/32            md5")),
    Mutation("HAL306", "trust", edit(HBA, "10.0.0.21/32            scram-sha-256", "10.0.0.21/32            trust")),
    Mutation("HAL306", "md5-encryption", edit(PG, "password_encryption = scram-sha-256", "password_encryption = md5")),
    Mutation("HAL307", "world-hba", append(HBA, "host    all             all             0.0.0.0/0               scram-sha-256\n")),
    Mutation("HAL307", "listen-everywhere", edit(PG, "listen_addresses = '10.0.0.20'", "listen_addresses = '*'")),
    Mutation("HAL308", "db-open", edit(DB_BOOT, "from 10.0.0.40/32 to any port 5432", "from any to any port 5432")),
    Mutation("HAL308", "cloud-accept", edit("firewalls/db.json", '"inbound_policy": "DROP"', '"inbound_policy": "ACCEPT"')),
    Mutation("HAL308", "default-allow", edit(DB_BOOT, "ufw default deny incoming", "ufw default allow incoming")),
    Mutation("HAL309", "no-password", edit(REDIS, "include /etc/redis/secrets.conf", "")),
    Mutation("HAL310", "bind-all", edit(REDIS, "bind 10.0.0.30", "bind 0.0.0.0")),
    Mutation("HAL310", "bind-public", edit(SENTINEL, "bind 10.0.0.30", "bind 203.0.113.7")),
    Mutation("HAL311", "redis-password", append(REDIS, "requirepass hunter2hunter2hunter2\n")),
    Mutation("HAL311", "env-password", append(APP_ENV, "PG_PASSWORD=s3cr3tvalue\n")),
    Mutation("HAL311", "private-key", write("app/deploy_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n")),
    Mutation("HAL312", "secrets-not-ignored", edit(".gitignore", "/secrets/\n", "")),
    Mutation("HAL313", "password-ssh", edit("nodes/db1/etc/ssh/sshd_config.d/*.conf", "PasswordAuthentication no",
                                            "PasswordAuthentication yes")),
    Mutation("HAL313", "cloud-init-pwauth", edit(CLOUD, "ssh_pwauth: false", "ssh_pwauth: true")),
    Mutation("HAL313", "no-drop-in", remove("nodes/lb1/etc/ssh/sshd_config.d")),
    Mutation("HAL401", "user-data-too-big", append(CLOUD, "".join(f"# padding line {i:05d} {'x' * 60}\n" for i in range(200)))),
    Mutation("HAL402", "unbounded-slots", edit(PG, "max_slot_wal_keep_size = '16384MB'", "max_slot_wal_keep_size = -1")),
    Mutation("HAL403", "nginx-outlives-starman", edit(LB, "keepalive_timeout 4s;", "keepalive_timeout 10s;")),
    Mutation("HAL404", "no-keepalive", edit(LB, "        keepalive 7;\n", "")),
    Mutation("HAL404", "http-1.0", edit(LB, "            proxy_http_version 1.1;\n", "")),
    Mutation("HAL405", "too-few-connections", edit(PG, "max_connections = 200", "max_connections = 10")),
    Mutation("HAL406", "shared-buffers-too-big", edit(PG, "shared_buffers = '1024MB'", "shared_buffers = '3500MB'")),
    Mutation("HAL407", "no-maxmemory", edit(REDIS, "maxmemory 1024mb", "# maxmemory 1024mb")),
    Mutation("HAL407", "maxmemory-too-big", edit(REDIS, "maxmemory 1024mb", "maxmemory 1900mb")),
    Mutation("HAL408", "no-pg-backup-cron", remove("nodes/db2/etc/cron.d/shop-pg-backup")),
    Mutation("HAL408", "no-retention", edit("nodes/db1/etc/pgbackrest/pgbackrest.conf", "repo1-retention-full=4", "")),
    Mutation("HAL408", "no-archiving", edit(PG, "archive_mode = on", "archive_mode = off")),
    Mutation("HAL409", "conflict-marker", append("README.md", "<<<<<<< before updating\nold\n=======\nnew\n>>>>>>> after updating\n")),
    Mutation("HAL409", "rej-file", write("nodes/lb1/etc/nginx/nginx.conf.rej", "@@ -1 +1 @@\n")),
]

# Defects only the real programs see (the file rules pass them).
TOOL_MUTATIONS = [
    Mutation("HAL501", "bad-value", edit(LB, "proxy_buffers 8 16k;", "proxy_buffers 8 16q;")),
    Mutation("HAL502", "bad-restart", edit(UNIT, "Restart=on-failure", "Restart=sometimes")),
    Mutation("HAL503", "wrong-type", edit(CLOUD, "package_update: true", "package_update: maybe")),
    Mutation("HAL504", "unquoted", edit(DB_BOOT, "ufw --force enable", "rm -rf $TMPDIR/x\nufw --force enable")),
    Mutation("HAL505", "bad-unit", edit(PG, "work_mem = '5041kB'", "work_mem = '5041kQ'")),
    Mutation("HAL505", "unknown-parameter", append(PG, "shared_bufers = '128MB'\n")),
    Mutation("HAL506", "bad-policy", edit(REDIS, "maxmemory-policy noeviction", "maxmemory-policy sometimes")),
]
