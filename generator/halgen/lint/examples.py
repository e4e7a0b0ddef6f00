"""Each rule's failing and passing example, as data that ships with halgen.

The table below is the test suite's mutations: each `Change` is one defect made in a
copy of a generated (golden) repo, and tests/lint_mutations.py applies every one and
asserts its rule flags it; the unchanged golden repo is the passing side. The rule
docs (`halgen lint --explain ID`, docs/rules/) show the changed text itself - the golden
files do not ship with halgen - so an Example is the defect, its Fix what halgen
generates. Only HAL002 and HAL003, which report on the other rules rather than on a
file, have hand-written examples (`HANDWRITTEN`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Literal

Kind = Literal["edit", "append", "write", "remove", "track"]

DEFAULT_CASE = "default-ha"
PROMETHEUS = "nodes/mon1/etc/prometheus/prometheus.yml"
RULES = "nodes/mon1/etc/prometheus/rules/shop-nodes.yml"
PG_RULES = "nodes/mon1/etc/prometheus/rules/shop-postgres.yml"
MANUAL_CASE = "manual-failover"  # the previous blueprint's PostgreSQL tier: slots, bootstrap script, failover by hand
HANDWRITTEN = "hand-written"  # an Example's source when no mutation shows the rule
DOC_EXAMPLES = 2  # at most this many examples per rule in its doc
_MAX_LINES = 6  # longer appended or written texts are cut to their first _SHOWN lines
_SHOWN = 3


@dataclass(frozen=True)
class Change:
    """One defect: `kind` applied to `file` (relative to the repo root; one part may be a
    glob) of the golden repo `case`. edit replaces the first `count` occurrences of `old`
    with `new` (`old` must be there); append adds `new` at the end; write creates the
    file with the text `new`; remove deletes the file or directory; track writes it and
    makes the repo a git repo that tracks it (`git add -f`, past .gitignore). `also`
    are changes made with it that show nothing by themselves (the include line that
    pulls a written file in, say)."""

    rule: str
    name: str
    kind: Kind
    file: str
    old: str = ""
    new: str = ""
    count: int = 1
    case: str = DEFAULT_CASE
    also: tuple[Change, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.rule}-{self.name}"


@dataclass(frozen=True)
class Snippet:
    """One side of an example: a line saying where (and what, for an absence), then the
    text to show, "" for none."""

    note: str
    text: str = ""
    lang: str = ""


@dataclass(frozen=True)
class Example:
    source: str  # the Change's id, or HANDWRITTEN
    file: str
    failing: Snippet
    passing: Snippet


LB = "nodes/lb1/etc/nginx/nginx.conf"
BALANCER = "nodes/lb1/etc/haproxy/haproxy.cfg"
PG = "nodes/db1/etc/postgresql/*/main/postgresql.conf"
PG_DIR = "nodes/db1/etc/postgresql/15/main"  # files written there need the version
HBA = "nodes/db1/etc/postgresql/*/main/pg_hba.conf"
REDIS = "nodes/redis1/etc/redis/redis.conf"
REPLICA = "nodes/redis2/etc/redis/redis.conf"
SENTINEL = "nodes/redis1/etc/redis/sentinel.conf"
UNIT = "nodes/app1/etc/systemd/system/shop-app-5000.service"
DB_BOOT = "nodes/db1/usr/local/sbin/shop-first-boot"
APP_BOOT = "nodes/app1/usr/local/sbin/shop-first-boot"
APP_ENV = "nodes/app1/etc/shop/app.env"
CLOUD = "nodes/db1/cloud-init.yaml"
SSHD = "nodes/db1/etc/ssh/sshd_config.d/*.conf"

# Defects the file rules see. A rule's first DOC_EXAMPLES entries are its doc examples.
CHANGES: tuple[Change, ...] = (
    Change("HAL001", "invalid-answer", "edit", ".copier-answers.yml", "app_servers: 3", "app_servers: 0"),
    Change("HAL001", "no-answers", "remove", ".copier-answers.yml"),
    Change("HAL101", "typo-directive", "edit", LB, "proxy_connect_timeout 2s;", "proxy_conect_timeout 2s;"),
    Change("HAL101", "wrong-context", "edit", LB, "proxy_http_version 1.1;",
           "proxy_http_version 1.1;\n            upstream x { }"),
    Change("HAL102", "no-header", "edit", CLOUD, "#cloud-config", "#cloud-confg"),
    Change("HAL102", "bad-yaml", "edit", CLOUD, "package_update: true", "package_update: [true"),
    Change("HAL102", "own-write-files", "append", CLOUD, new="write_files:\n- path: /etc/motd\n  content: hello\n"),
    Change("HAL103", "no-equals", "edit", UNIT, "Restart=on-failure", "Restart on-failure"),
    Change("HAL103", "no-execstart", "edit", UNIT, "ExecStart=", "#ExecStart="),
    Change("HAL104", "set-twice", "append", PG, new="shared_buffers = '512MB'\n"),
    Change("HAL104", "unbalanced-quote", "edit", PG, "work_mem = '5041kB'", "work_mem = '5041kB"),
    Change("HAL105", "bad-method", "edit", HBA, "10.0.0.42/32            scram-sha-256",
           "10.0.0.42/32            scram-sha256"),
    Change("HAL105", "bad-address", "edit", HBA, "10.0.0.42/32", "10.0.0.42/33"),
    Change("HAL106", "unknown-directive", "edit", REDIS, "appendfsync everysec", "appendfsyncc everysec"),
    Change("HAL107", "broken-json", "edit", "firewalls/db.json", "}", ""),
    Change("HAL108", "minute-60", "write", "nodes/db1/etc/cron.d/shop-vacuum",
           new="60 3 * * 0 postgres /usr/bin/vacuumdb --all --analyze-only\n"),
    Change("HAL108", "never-fires", "write", "nodes/redis1/etc/cron.d/shop-cleanup",
           new="17 2 31 2 * root /usr/local/sbin/shop-cleanup\n"),
    Change("HAL201", "missing-server", "edit", BALANCER, "    server app3-5000 10.0.0.42:5000 weight 1\n", ""),
    Change("HAL201", "extra-server", "append", BALANCER, new="    server app4-5000 10.0.0.43:5000\n"),
    Change("HAL201", "nginx-elsewhere", "edit", LB, "server 127.0.0.1:8404 max_fails=0;",
           "server 127.0.0.1:8405 max_fails=0;"),
    Change("HAL201", "starlet-moved", "edit", UNIT, "--port=10.0.0.40:5000 ", "--port=10.0.0.40:5009 "),
    Change("HAL202", "listener-blocked", "edit", DB_BOOT, "ufw allow proto tcp from 10.0.0.20/31 to any port 5432",
           "ufw allow proto tcp from 10.0.0.20/31 to any port 5433"),
    Change("HAL202", "port-without-listener", "edit", APP_BOOT, "ufw --force enable",
           "ufw allow proto tcp from 10.0.0.10/32 to any port 8080\nufw --force enable"),
    Change("HAL203", "cloud-source-differs", "edit", "firewalls/db.json", '"10.0.0.42/32"', '"10.0.0.99/32"'),
    Change("HAL204", "lb-not-admitted", "edit", APP_BOOT, "from 10.0.0.10/31 to any port 5000",
           "from 10.0.0.12/31 to any port 5000"),
    Change("HAL205", "replica-missing", "edit", HBA,
           "hostssl replication     replicator      10.0.0.20/31            scram-sha-256  # db1-db2\n", ""),
    Change("HAL205", "too-wide", "edit", HBA, "10.0.0.20/31", "10.0.0.16/28"),
    Change("HAL205", "stranger", "append", HBA,
           new="host    app             app             10.0.0.99/32            scram-sha-256\n"),
    Change("HAL410", "two-members", "edit", "nodes/db1/etc/default/etcd", ",db2=https://10.0.0.21:2380", ""),
    Change("HAL411", "short-ttl", "edit", "nodes/db1/etc/patroni/config.yml", "ttl: 15", "ttl: 12"),
    Change("HAL412", "no-patroni", "remove", "nodes/db2/etc/patroni/config.yml"),
    Change("HAL412", "other-etcd", "edit", "nodes/db2/etc/patroni/config.yml", ",10.0.0.21:2379", ""),
    Change("HAL413", "not-persistent", "edit", "nodes/db1/etc/systemd/system/shop-pg-backup-full.timer",
           "Persistent=true\n", ""),
    Change("HAL413", "no-time-limit", "edit", "nodes/redis1/etc/systemd/system/shop-redis-backup.service",
           "TimeoutStartSec=3600\n", ""),
    Change("HAL206", "wrong-slot", "edit", "nodes/db1/etc/shop/pg-setup.sql", "slot('db2')", "slot('db9')",
           case=MANUAL_CASE),
    Change("HAL206", "too-few-senders", "edit", PG, "max_wal_senders = 7", "max_wal_senders = 0"),
    Change("HAL207", "minority-quorum", "edit", SENTINEL, "sentinel monitor shop 10.0.0.30 6379 2",
           "sentinel monitor shop 10.0.0.30 6379 1"),
    Change("HAL207", "watches-replica", "edit", SENTINEL, "sentinel monitor shop 10.0.0.30 6379 2",
           "sentinel monitor shop 10.0.0.31 6379 2"),
    Change("HAL208", "two-masters", "edit", REPLICA, "replicaof 10.0.0.30 6379", "# replicaof 10.0.0.30 6379"),
    Change("HAL208", "follows-nobody", "edit", REPLICA, "replicaof 10.0.0.30 6379", "replicaof 10.0.0.39 6379"),
    Change("HAL209", "dsn-misses-node", "edit", APP_ENV,
           "host=10.0.0.20,10.0.0.21;port=5432,5432;target_session_attrs=read-write",
           "host=10.0.0.20;port=5432;target_session_attrs=read-write"),
    Change("HAL209", "wrong-sentinels", "edit", APP_ENV, "REDIS_SENTINELS=10.0.0.40:26379",
           "REDIS_SENTINELS=10.0.0.44:26379"),
    Change("HAL210", "node-missing", "remove", "nodes/app3"),
    Change("HAL210", "stray-node", "write", "nodes/app9/NODE.md", new="# app9\n"),
    Change("HAL301", "http-host", "edit", LB, "proxy_set_header Host $host;", "proxy_set_header Host $http_host;"),
    Change("HAL302", "location-drops-hsts", "edit", LB, "location = /nginx-health {",
           "location = /nginx-health {\n            add_header X-Probe 1;", count=3, case="tls-sync"),
    Change("HAL303", "alias-traversal", "edit", LB, "location / {\n            limit_req",
           "location /files {\n            alias /srv/files/;\n        }\n\n"
           "        location / {\n            limit_req"),
    Change("HAL304", "variable-proxy-pass", "edit", LB, "proxy_pass http://shop_app;",
           "proxy_pass http://$arg_backend;"),
    Change("HAL305", "tokens-on", "edit", LB, "server_tokens off;", "server_tokens on;"),
    Change("HAL305", "tokens-unset", "edit", LB, "    server_tokens off;\n", ""),
    Change("HAL306", "md5", "edit", HBA, "10.0.0.42/32            scram-sha-256", "10.0.0.42/32            md5"),
    Change("HAL306", "trust", "edit", HBA, "10.0.0.20/31            scram-sha-256", "10.0.0.20/31            trust"),
    Change("HAL306", "md5-encryption", "edit", PG, "password_encryption = scram-sha-256", "password_encryption = md5"),
    Change("HAL307", "world-hba", "append", HBA,
           new="host    all             all             0.0.0.0/0               scram-sha-256\n"),
    Change("HAL307", "listen-everywhere", "edit", PG, "listen_addresses = '10.0.0.20'", "listen_addresses = '*'"),
    Change("HAL308", "db-open", "edit", DB_BOOT, "from 10.0.0.40/31 to any port 5432", "from any to any port 5432"),
    Change("HAL308", "cloud-accept", "edit", "firewalls/db.json", '"inbound_policy": "DROP"',
           '"inbound_policy": "ACCEPT"'),
    Change("HAL308", "ssh-halves", "edit", DB_BOOT, "from 203.0.113.0/24 to any port 22 comment 'ssh-admins'",
           "from 0.0.0.0/1 to any port 22\nufw allow proto tcp from 128.0.0.0/1 to any port 22"),
    Change("HAL308", "ssh-by-name", "edit", DB_BOOT, "ufw default deny incoming",
           "ufw default deny incoming\nufw limit ssh"),
    Change("HAL308", "default-allow", "edit", DB_BOOT, "ufw default deny incoming", "ufw default allow incoming"),
    Change("HAL309", "no-password", "edit", REDIS, "aclfile /etc/redis/users.acl", ""),
    Change("HAL310", "bind-all", "edit", REDIS, "bind 10.0.0.30", "bind 0.0.0.0"),
    Change("HAL310", "bind-public", "edit", SENTINEL, "bind 10.0.0.30", "bind 203.0.113.7"),
    Change("HAL311", "redis-password", "append", REDIS, new="requirepass hunter2hunter2hunter2\n"),
    Change("HAL311", "env-password", "append", APP_ENV, new="PG_PASSWORD=s3cr3tvalue\n"),
    Change("HAL311", "private-key", "write", "app/deploy_key",
           new="-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n"),
    Change("HAL312", "secrets-not-ignored", "edit", ".gitignore", "/secrets/\n", ""),
    Change("HAL313", "password-ssh", "edit", SSHD, "PasswordAuthentication no", "PasswordAuthentication yes"),
    Change("HAL313", "cloud-init-pwauth", "edit", CLOUD, "ssh_pwauth: false", "ssh_pwauth: true"),
    Change("HAL313", "no-drop-in", "remove", "nodes/lb1/etc/ssh/sshd_config.d"),
    Change("HAL330", "plaintext-port", "append", REDIS, new="port 6379\n"),
    Change("HAL330", "replication-in-clear", "edit", REPLICA, "tls-replication yes", "tls-replication no"),
    Change("HAL330", "sentinel-no-ca", "edit", SENTINEL, "tls-ca-cert-file /etc/shop/tls/ca.crt\n", ""),
    Change("HAL401", "user-data-too-big", "append", CLOUD,
           new="".join(f"# padding line {i:05d} {'x' * 60}\n" for i in range(200))),
    Change("HAL402", "unbounded-slots", "edit", PG, "max_slot_wal_keep_size = '16384MB'",
           "max_slot_wal_keep_size = -1"),
    Change("HAL403", "haproxy-outlives-app-server", "edit", BALANCER, "pool-purge-delay 4s", "pool-purge-delay 10s"),
    Change("HAL403", "nginx-outlives-haproxy", "edit", LB, "keepalive_timeout 60s;", "keepalive_timeout 70s;"),
    Change("HAL404", "no-keepalive", "edit", LB, "        keepalive 32;\n", ""),
    Change("HAL404", "http-1.0", "edit", LB, "            proxy_http_version 1.1;\n", ""),
    Change("HAL405", "too-few-connections", "edit", PG, "max_connections = 200", "max_connections = 10"),
    Change("HAL405", "starlet-workers-raised", "edit", UNIT, "--max-workers 5 ", "--max-workers 300 "),
    Change("HAL406", "shared-buffers-too-big", "edit", PG, "shared_buffers = '1024MB'", "shared_buffers = '3500MB'"),
    Change("HAL407", "no-maxmemory", "edit", REDIS, "maxmemory 1024mb", "# maxmemory 1024mb"),
    Change("HAL407", "maxmemory-too-big", "edit", REDIS, "maxmemory 1024mb", "maxmemory 1900mb"),
    Change("HAL408", "no-pg-backup-timer", "remove", "nodes/db2/etc/systemd/system/shop-pg-backup-full.timer"),
    Change("HAL408", "no-retention", "edit", "nodes/db1/etc/pgbackrest/pgbackrest.conf", "repo1-retention-full=4", ""),
    Change("HAL408", "no-archiving", "edit", PG, "archive_mode = on", "archive_mode = off"),
    Change("HAL414", "db-unwatched", "edit", PROMETHEUS,
           "  - targets: ['10.0.0.21:9100']\n    labels: {node: db2, role: db}\n", ""),
    Change("HAL414", "alert-untested", "append", RULES,
           new="  - alert: NodeRebooted\n    expr: 'changes(node_boot_time_seconds[10m]) > 0'\n"
               "    labels: {severity: warning}\n"),
    Change("HAL409", "conflict-marker", "append", "README.md",
           new="<<<<<<< before updating\nold\n=======\nnew\n>>>>>>> after updating\n"),
    Change("HAL409", "rej-file", "write", "nodes/lb1/etc/nginx/nginx.conf.rej", new="@@ -1 +1 @@\n"),
    # Walk-arounds: the same defects moved where a file-by-file reading would not look.
    Change("HAL307", "listen-in-include-dir", "write", f"{PG_DIR}/conf.d/listen.conf", new="listen_addresses = '*'\n",
           also=(Change("HAL307", "", "append", PG, new="include_dir 'conf.d'\n"),)),
    Change("HAL307", "listen-include-if-exists", "write", f"{PG_DIR}/tuning.conf",
           new="listen_addresses = '0.0.0.0'\n",
           also=(Change("HAL307", "", "append", PG, new="include_if_exists 'tuning.conf'\n"),)),
    Change("HAL306", "hba-file-second", "write", f"{PG_DIR}/pg_hba_local.conf",
           new="host    all             all             10.0.0.0/8              trust\n",
           also=(Change("HAL306", "", "edit", PG, "/main/pg_hba.conf'", "/main/pg_hba_local.conf'"),)),
    Change("HAL306", "md5-in-include", "write", f"{PG_DIR}/auth.conf", new="password_encryption = md5\n",
           also=(Change("HAL306", "", "append", PG, new="include 'auth.conf'\n"),)),
    Change("HAL320", "pg-include-outside", "append", PG, new="include '/srv/postgresql/extra.conf'\n"),
    Change("HAL320", "hba-file-outside", "edit", PG, "hba_file = '/etc/postgresql/15/main/pg_hba.conf'",
           "hba_file = '/var/lib/postgresql/pg_hba.conf'"),
    Change("HAL320", "redis-include-swapped", "edit", SENTINEL, "include /etc/redis/sentinel-secrets.conf",
           "include /tmp/sentinel.conf"),
    Change("HAL320", "nginx-include-outside", "edit", LB, "include /etc/nginx/mime.types;",
           "include /etc/nginx/mime.types;\n    include /srv/nginx/extra.conf;"),
    Change("HAL320", "sshd-include-outside", "edit", SSHD, "PermitRootLogin no",
           "Include /home/ops/sshd.conf\nPermitRootLogin no"),
    Change("HAL310", "second-bind", "append", REDIS, new="bind 0.0.0.0\n"),
    Change("HAL310", "bind-in-glob-include", "write", "nodes/redis1/etc/redis/conf.d/net.conf", new="bind 0.0.0.0\n",
           also=(Change("HAL310", "", "append", REDIS, new="include /etc/redis/conf.d/*.conf\n"),)),
    Change("HAL330", "port-in-glob-include", "write", "nodes/redis1/etc/redis/conf.d/net.conf", new="port 6379\n",
           also=(Change("HAL330", "", "append", REDIS, new="include /etc/redis/conf.d/*.conf\n"),)),
    Change("HAL309", "acl-file-swapped", "edit", REDIS, "aclfile /etc/redis/users.acl", "aclfile /etc/redis/local.acl"),
    Change("HAL309", "default-nopass", "append", REDIS, new="user default on nopass ~* &* +@all\n"),
    Change("HAL311", "acl-plaintext", "append", REDIS, new="user app on >Sup3rS3cretPassw0rd ~app:* +@read\n"),
    Change("HAL311", "putty-key", "write", "app/deploy.ppk",
           new="PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\n"),
    Change("HAL311", "rsa-pem-key", "write", "nodes/lb1/etc/ssl/private/lb.key",
           new="-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n"),
    Change("HAL311", "pkcs8-encrypted-key", "write", "app/tls.key",
           new="-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG\n"),
    Change("HAL311", "tracked-secrets", "track", "secrets/secrets.env", new="REDIS_PASSWORD=Qx7vLr2mZp9sTk4w\n"),
    Change("HAL312", "force-added-secrets", "track", "secrets/secrets.env", new="REDIS_PASSWORD=Qx7vLr2mZp9sTk4w\n"),
    Change("HAL312", "force-added-build", "track", "build/user-data/db1.yaml", new="#cloud-config\n"),
    Change("HAL301", "forwarded-host", "edit", LB, "proxy_set_header Host $host;",
           "proxy_set_header Host $http_x_forwarded_host;"),
    Change("HAL301", "host-through-set", "edit", LB, "proxy_set_header Host $host;",
           "set $origin $http_x_original_host;\n            proxy_set_header Host $origin;"),
    Change("HAL303", "alias-in-included-file", "write", "nodes/lb1/etc/nginx/snippets/media.conf",
           new="location /media {\n    alias /srv/media/;\n}\n",
           also=(Change("HAL303", "", "edit", LB, "location / {\n            limit_req",
                        "include /etc/nginx/snippets/*.conf;\n\n        location / {\n            limit_req"),)),
    Change("HAL322", "autoindex", "edit", LB, "server_tokens off;", "server_tokens off;\n    autoindex on;"),
    Change("HAL322", "autoindex-in-conf-d", "write", "nodes/lb1/etc/nginx/conf.d/files.conf", new="autoindex on;\n",
           also=(Change("HAL322", "", "edit", LB, "server_tokens off;",
                        "server_tokens off;\n    include conf.d/*.conf;"),)),
    Change("HAL323", "balancer-on-every-address", "edit", BALANCER, "bind 127.0.0.1:8404", "bind 0.0.0.0:8404"),
    Change("HAL323", "balancer-on-vpc", "edit", BALANCER, "bind 127.0.0.1:8404", "bind 10.0.0.10:8404"),
    Change("HAL313", "match-block", "append", SSHD, new="Match Address *\n    PasswordAuthentication yes\n"),
    Change("HAL313", "earlier-drop-in", "write", "nodes/db1/etc/ssh/sshd_config.d/00-local.conf",
           new="PasswordAuthentication yes\n"),
    Change("HAL313", "included-file", "write", "nodes/db1/etc/ssh/root.conf", new="PermitRootLogin yes\n",
           also=(Change("HAL313", "", "edit", SSHD, "PermitRootLogin no",
                        "Include /etc/ssh/root.conf\nPermitRootLogin no"),)),
    Change("HAL308", "public-interface", "edit", DB_BOOT, "ufw --force enable",
           "ufw --force enable\nufw allow in on eth0 to any port 5432"),
    Change("HAL308", "app-profile", "edit", DB_BOOT, "ufw --force enable", "ufw allow OpenSSH\nufw --force enable"),
    Change("HAL308", "disabled-after-enable", "append", DB_BOOT, new="ufw disable\n"),
    Change("HAL308", "reset-after-enable", "append", DB_BOOT, new="ufw --force reset\n"),
    Change("HAL308", "route-rule", "edit", DB_BOOT, "ufw --force enable",
           "ufw route allow proto tcp to any port 5432\nufw --force enable"),
    Change("HAL308", "insert-first", "edit", "nodes/redis1/usr/local/sbin/shop-first-boot", "ufw --force enable",
           "ufw --force enable\nufw insert 1 allow 6379/tcp"),
    Change("HAL307", "alter-system", "append", "nodes/db1/etc/shop/pg-setup.sql",
           new="ALTER SYSTEM SET listen_addresses = '*';\n"),
    Change("HAL307", "auto-conf", "write", "nodes/db1/var/lib/postgresql/15/main/postgresql.auto.conf",
           new="listen_addresses = '*'\n"),
    Change("HAL308", "cloud-init-disables", "edit", CLOUD, "- [/usr/local/sbin/shop-first-boot]",
           "- [/usr/local/sbin/shop-first-boot]\n- [ufw, disable]"),
    Change("HAL308", "cron-script-opens", "write", "nodes/db1/usr/local/sbin/shop-open-db",
           new="#!/bin/sh\nufw allow 5432/tcp\n"),
    Change("HAL321", "user-alias", "write", "nodes/app1/etc/sudoers.d/services",
           new="User_Alias APP = perlapp\nAPP ALL = NOPASSWD: ALL\n"),
    Change("HAL101", "typo-in-included-file", "write", "nodes/lb1/etc/nginx/conf.d/extra.conf",
           new="client_max_body_siz 1m;\n",
           also=(Change("HAL101", "", "edit", LB, "server_tokens off;",
                        "server_tokens off;\n    include /etc/nginx/conf.d/*.conf;"),)),
    Change("HAL104", "set-again-in-include", "write", f"{PG_DIR}/conf.d/memory.conf", new="work_mem = '64MB'\n",
           also=(Change("HAL104", "", "edit", PG, "work_mem = '5041kB'",
                        "include_dir 'conf.d'\nwork_mem = '5041kB'"),)),
    Change("HAL105", "hba-include-before-16", "append", HBA, new="include pg_hba_extra.conf\n"),
    Change("HAL106", "unknown-in-include", "write", "nodes/redis1/etc/redis/tuning.conf",
           new="maxmemory-polcy allkeys-lru\n",
           also=(Change("HAL106", "", "append", REDIS, new="include /etc/redis/tuning.conf\n"),)),
    Change("HAL320", "glob-outside", "append", REDIS, new="include /srv/redis/*.conf\n"),
    Change("HAL313", "shadowed-drop-in", "write", "nodes/db1/etc/ssh/sshd_config.d/90-local.conf",
           new="PasswordAuthentication yes\n"),
    Change("HAL321", "script-variable-user", "edit", APP_BOOT, "ufw --force enable",
           "SERVICE_USER=perlapp\necho \"$SERVICE_USER ALL=(ALL) NOPASSWD:ALL\" > /etc/sudoers.d/app\n"
           "ufw --force enable"),
    Change("HAL321", "sudoers-drop-in", "write", "nodes/app1/etc/sudoers.d/perlapp",
           new="perlapp ALL=(ALL) NOPASSWD: ALL\n"),
    Change("HAL321", "script-sudo-group", "edit", APP_BOOT, "ufw --force enable",
           "usermod -aG sudo perlapp\nufw --force enable"),
    Change("HAL321", "script-writes-sudoers", "edit", APP_BOOT, "ufw --force enable",
           "echo 'perlapp ALL=(root) NOPASSWD: /usr/bin/systemctl' > /etc/sudoers.d/perlapp\nufw --force enable"),
    # PostgreSQL in the clear inside the VPC (vpc_tls), wherever the setting or string is.
    Change("HAL331", "ssl-off", "append", PG, new="ssl = off\n"),
    Change("HAL331", "host-line", "append", HBA,
           new="host    all             all             10.0.0.0/24             scram-sha-256\n"),
    Change("HAL331", "ssl-off-in-include", "write", f"{PG_DIR}/conf.d/tls.conf", new="ssl = off\n",
           also=(Change("HAL331", "", "append", PG, new="include_dir 'conf.d'\n"),)),
    Change("HAL331", "ssl-off-alter-system", "append", "nodes/db1/etc/shop/pg-setup.sql",
           new="ALTER SYSTEM SET ssl = off;\n"),
    Change("HAL331", "old-tls", "edit", PG, "ssl_min_protocol_version = 'TLSv1.3'",
           "ssl_min_protocol_version = 'TLSv1'"),
    Change("HAL331", "hostnossl", "edit", HBA, "hostssl app             app             10.0.0.40/31",
           "hostnossl app           app             10.0.0.40/31"),
    Change("HAL331", "host-in-hba-file", "write", f"{PG_DIR}/pg_hba_local.conf",
           new="host    app             app             10.0.0.40/32            scram-sha-256\n",
           also=(Change("HAL331", "", "edit", PG, "/main/pg_hba.conf'", "/main/pg_hba_local.conf'"),)),
    Change("HAL331", "dsn-require", "edit", APP_ENV, "read-write;connect_timeout=3;sslmode=verify-full",
           "read-write;connect_timeout=3;sslmode=require"),
    Change("HAL331", "dsn-no-sslmode", "edit", APP_ENV, "read-write;connect_timeout=3;sslmode=verify-full;",
           "read-write;connect_timeout=3;"),
    Change("HAL331", "dsn-no-rootcert", "edit", APP_ENV, "read-write;connect_timeout=3;sslmode=verify-full;"
           "sslrootcert=/etc/shop/tls/ca.crt", "read-write;connect_timeout=3;sslmode=verify-full"),
    Change("HAL331", "basebackup-prefer", "edit", "nodes/db2/usr/local/sbin/shop-pg-bootstrap-replica",
           "sslmode=verify-full", "sslmode=prefer", case=MANUAL_CASE),
    Change("HAL331", "failover-prefer", "edit", "scripts/pg-failover.sh", "sslmode=verify-full", "sslmode=prefer",
           case=MANUAL_CASE),
    Change("HAL331", "primary-conninfo-prefer", "write", "nodes/db2/var/lib/postgresql/15/main/postgresql.auto.conf",
           new="primary_conninfo = 'host=10.0.0.20 port=5432 user=replicator sslmode=prefer'\n"),
)

# Defects only the real programs see (the file rules pass them).
TOOL_CHANGES: tuple[Change, ...] = (
    Change("HAL501", "bad-value", "edit", LB, "proxy_buffers 8 16k;", "proxy_buffers 8 16q;"),
    Change("HAL508", "unknown-algorithm", "edit", BALANCER, "balance leastconn", "balance fastest"),
    Change("HAL509", "bad-expression", "edit", PG_RULES, "expr: 'pg_up == 0'", "expr: 'pg_up == == 0'"),
    Change("HAL509", "test-fails", "edit", RULES, "expr: 'up{job=\"node\"} == 0'\n    for: 30s",
           "expr: 'up{job=\"node\"} == 0'\n    for: 5m"),
    Change("HAL510", "bad-duration", "edit", "nodes/mon1/etc/prometheus/alertmanager.yml", "group_wait: 10s",
           "group_wait: 10 seconds"),
    Change("HAL511", "no-label", "edit", "nodes/lb1/etc/mtail/shop-nginx.mtail",
           "counter halgen_http_requests_total by status", "counter halgen_http_requests_total by"),
    Change("HAL512", "bad-timeout", "edit", "nodes/mon1/etc/prometheus/blackbox.yml", "timeout: 5s",
           "timeout: 5 seconds"),
    Change("HAL502", "bad-restart", "edit", UNIT, "Restart=on-failure", "Restart=sometimes"),
    Change("HAL503", "wrong-type", "edit", CLOUD, "package_update: true", "package_update: maybe"),
    Change("HAL504", "unquoted", "edit", DB_BOOT, "ufw --force enable", "rm -rf $TMPDIR/x\nufw --force enable"),
    Change("HAL505", "bad-unit", "edit", PG, "work_mem = '5041kB'", "work_mem = '5041kQ'"),
    Change("HAL505", "unknown-parameter", "append", PG, new="shared_bufers = '128MB'\n"),
    Change("HAL506", "bad-policy", "edit", REDIS, "maxmemory-policy noeviction", "maxmemory-policy sometimes"),
    Change("HAL507", "filters-dropped", "edit", UNIT,
           "SystemCallArchitectures=native\nSystemCallFilter=@system-service\n"
           "SystemCallFilter=~@privileged @resources\n"
           "# The app is your code: a refused call fails like any permission error instead of\n"
           "# killing the worker.\n"
           "SystemCallErrorNumber=EPERM\nCapabilityBoundingSet=\nAmbientCapabilities=\n", ""),
    Change("HAL507", "drop-in-unsandboxes", "write", "nodes/redis1/etc/systemd/system/shop-redis.service.d/debug.conf",
           new="[Service]\n# for strace while debugging\nCapabilityBoundingSet=~\nSystemCallFilter=\n"
               "PrivateUsers=no\n"),
)

ALL_CHANGES = CHANGES + TOOL_CHANGES

_WORKFLOW = ".github/workflows/halgen-lint.yml"
_APT = ("sudo apt-get install -y -qq --no-install-recommends nginx systemd cloud-init {}postgresql redis-server "
        "openssl starman starlet")

# HAND-WRITTEN, not from a mutation: HAL002 and HAL003 report on the other rules (a
# program missing where lint runs, a rule that crashed), so no change to a repo's files
# shows them.
HANDWRITTEN_EXAMPLES: dict[str, tuple[Example, ...]] = {
    "HAL002": (Example(HANDWRITTEN, _WORKFLOW,
                       Snippet(f"`{_WORKFLOW}` installs the programs, but not shellcheck:", _APT.format(""), "sh"),
                       Snippet(f"`{_WORKFLOW}` (as generated) installs every program the tools rules run:",
                               _APT.format("shellcheck "), "sh")),),
    "HAL003": (Example(HANDWRITTEN, "halgen lint output",
                       Snippet("`halgen lint` output:",
                               ".:0: HAL003 error HAL305 (nginx-server-tokens) failed and did not check the repo: "
                               "RuntimeError: boom", "text"),
                       Snippet("A halgen release with the bug fixed (report it with the message); "
                               "a complete run has no HAL003 line.")),),
}


def changes(rule_id: str) -> list[Change]:
    """The rule's mutations, in table order."""
    return [c for c in ALL_CHANGES if c.rule == rule_id]


def examples(rule_id: str, limit: int | None = DOC_EXAMPLES) -> list[Example]:
    """The rule's examples for its doc: from its first `limit` mutations (None: all), or
    hand-written for the rules no mutation shows."""
    found = [example(c) for c in changes(rule_id)] or list(HANDWRITTEN_EXAMPLES.get(rule_id, ()))
    return found if limit is None else found[:limit]


def example(change: Change) -> Example:
    """The failing and passing text of one mutation: the changed text itself, labelled with its file."""
    where, lang = f"`{change.file}`", language(change.file)
    if change.kind == "edit":
        fix = Snippet(f"{where} has:", _tidy(change.old, mid_line=True), lang)
        if change.new:
            failing = Snippet(f"{where} has:", _tidy(change.new, mid_line=True), lang)
        else:
            failing = Snippet(f"{where} without the text shown under Fix.")
        return Example(change.id, change.file, failing, fix)
    if change.kind == "append":
        note, text = _shortened(change.new)
        return Example(change.id, change.file, Snippet(f"{where} ends with{note}:", text, lang),
                       Snippet(f"{where} as generated (nothing appended)."))
    if change.kind == "write":
        note, text = _shortened(change.new)
        return Example(change.id, change.file, Snippet(f"{where} exists{note}:", text, lang),
                       Snippet(f"{where} absent: delete it."))
    if change.kind == "track":
        note, text = _shortened(change.new)
        return Example(change.id, change.file, Snippet(f"git tracks {where} (`git add -f`){note}:", text, lang),
                       Snippet(f"{where} untracked (`git rm --cached {change.file}`), kept out by .gitignore."))
    return Example(change.id, change.file, Snippet(f"{where} is missing."),
                   Snippet(f"{where} present, as halgen generates it."))


def language(file: str) -> str:
    """The Markdown code-fence language for a file's text."""
    name = file.rsplit("/", 1)[-1]
    if name.endswith((".yml", ".yaml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".sql"):
        return "sql"
    if name.endswith(".md"):
        return "markdown"
    if name.endswith(".service"):
        return "ini"
    if "/nginx/" in file and name.endswith(".conf"):
        return "nginx"
    if "/sbin/" in file or name.endswith(".env"):
        return "sh"
    return "text"


def _shortened(text: str) -> tuple[str, str]:
    """A long text cut to its first lines, with a note (" 200 lines, the first 3 shown")."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= _MAX_LINES:
        return "", "\n".join(lines)
    return (f" {len(lines)} lines ({len(text):,} characters; the first {_SHOWN} shown)",
            "\n".join(lines[:_SHOWN]))


def _tidy(text: str, mid_line: bool = False) -> str:
    """Text for a code block: without its common indentation or trailing newline.

    An edit's text may start mid-line, its first line then carrying no indentation;
    it is given that of the next line (one level less when it opens a block) first."""
    lines = text.rstrip("\n").splitlines()
    if mid_line and len(lines) > 1 and lines[0] == lines[0].lstrip():
        following = next((line for line in lines[1:] if line.strip()), "")
        indent = len(following) - len(following.lstrip())
        if lines[0].rstrip().endswith("{"):
            indent = max(indent - 4, 0)
        lines[0] = " " * indent + lines[0]
    return textwrap.dedent("\n".join(lines))
