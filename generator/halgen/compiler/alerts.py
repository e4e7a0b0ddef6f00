"""The stack's alerts as data: one table renders Prometheus' rule file, its promtool unit
tests (each alert fires on one set of series and stays quiet on another) and the
README's runbook, so the three never disagree.

Series names are the exporters' own (Debian 12's node_exporter 1.5, postgres_exporter
0.11 with the queries in <project>-postgres-queries.yml, redis_exporter 1.45, the nginx
exporter 0.11, Patroni 3.0, the blackbox exporter 0.23) and halgen's (the jobs' and
backups' textfile metrics, mtail's halgen_http_*). Every series carries the scrape's
``node`` label (prometheus.yml), which the summaries and the inhibition use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from halgen.compiler.model import Stack

FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs"'
RUNBOOK = "README.md#alert-{}"
# Seconds between samples and evaluations in the tests of days-long conditions: under
# Prometheus' 5-minute lookback, so a series never goes stale between two samples.
LONG = 240


@dataclass(frozen=True)
class Case:
    """One promtool test of an alert: input series (promtool's expanding notation, one
    sample per 15 s), when to evaluate, and the alerts expected then (their labels
    besides severity, and the summary as Prometheus renders it); none for a quiet case."""

    series: dict[str, str]
    at: str
    fires: tuple[tuple[dict[str, str], str], ...] = ()
    step_s: int = 15  # sample and evaluation interval: long ones test days-long conditions quickly


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    expr: str
    severity: str  # critical: act now; warning: act today
    summary: str  # a Go template (Prometheus renders $labels and $value)
    runbook: str  # the README paragraph: what it means, what to do
    fires: Case
    quiet: Case | None  # None: it cannot be quiet (Watchdog)
    for_s: int = 0
    anchor: str = ""  # the runbook's README anchor when several alerts share one

    @property
    def runbook_anchor(self) -> str:
        return RUNBOOK.format(self.anchor or self.name.lower())

    @property
    def summary_text(self) -> str:
        """The summary for people: {{ $labels.node }} -> NODE, {{ $value ... }} -> N."""
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: m.group(1).upper(), self.summary)
        return re.sub(r"\{\{ \$value[^}]*\}\}", "N", text)

    @property
    def for_text(self) -> str:
        return f"{self.for_s // 60}m" if self.for_s % 60 == 0 else f"{self.for_s}s"


@dataclass(frozen=True)
class Group:
    name: str
    alerts: list[Alert] = field(default_factory=list)


def _one(labels: dict[str, str], summary: str) -> tuple[tuple[dict[str, str], str], ...]:
    return ((labels, summary),)


def alerts(stack: Stack) -> list[Alert]:
    """Every alert of the stack, in rule-file order."""
    found: list[Alert] = []
    found += _nodes(stack) + _web(stack) + _postgres(stack) + _redis(stack)
    return found


def groups(stack: Stack) -> list[Group]:
    """The alerts by group: one rule file each (rules/<project>-<group>.yml)."""
    by_name: dict[str, Group] = {}
    for alert in alerts(stack):
        by_name.setdefault(alert.group, Group(alert.group)).alerts.append(alert)
    return list(by_name.values())


@dataclass(frozen=True)
class PromtoolFile:
    """One promtool test file: the cases of one group evaluated at one interval. promtool
    evaluates every rule of the files a test loads at every step, so each file loads its
    group's rules only (days-long cases over all 43 rules took seconds of every lint)."""

    group: Group
    step_s: int
    default_step_s: int

    @property
    def name(self) -> str:
        return self.group.name if self.step_s == self.default_step_s else f"{self.group.name}-{self.step_s}s"

    def cases(self) -> list[tuple[Alert, Case, str]]:
        """(alert, case, 'fires' or 'stays quiet') of this file, in rule-file order."""
        return [(alert, case, kind) for alert in self.group.alerts
                for case, kind in ((alert.fires, "fires"), (alert.quiet, "stays quiet"))
                if case and case.step_s == self.step_s]


def promtool_files(stack: Stack) -> list[PromtoolFile]:
    files = []
    for group in groups(stack):
        steps = sorted({case.step_s for a in group.alerts for case in (a.fires, a.quiet) if case})
        files += [PromtoolFile(group, step, stack.scrape_interval_s) for step in steps]
    return files


def _nodes(s: Stack) -> list[Alert]:
    db = s.dbs[0].name
    up = f'up{{job="node", node="{db}"}}'
    fs = f'{{node="{db}", mountpoint="/", fstype="ext4"}}'
    return [
        Alert("Watchdog", "alerting", "vector(1)", "none", "Alerting works (always firing)",
              "Always firing, on purpose: while it reaches Alertmanager, the monitoring node pings the dead "
              "man's switch (ALERT_DEADMAN_URL in secrets/secrets.env) every minute. If the switch stops "
              "hearing from it, the monitoring node, Prometheus or Alertmanager is down: alerts reach nobody.",
              Case({}, "1m", _one({}, "Alerting works (always firing)")), None),
        Alert("NodeDown", "nodes", 'up{job="node"} == 0', "critical",
              "{{ $labels.node }} does not answer the monitoring node (down, off the VPC, or node_exporter stopped)",
              "The monitoring node cannot scrape the node's node_exporter for 30 s. Look at the node in Cloud "
              "Manager (running? its console, LISH), then `systemctl status prometheus-node-exporter` on it. "
              "While it fires, the other alerts of that node are held back (inhibition): its services are "
              "probably down too. A DB primary or Redis master that is down fails over by itself.",
              Case({up: "0x8"}, "1m", _one({"job": "node", "node": db},
                                          f"{db} does not answer the monitoring node (down, off the VPC, or "
                                          "node_exporter stopped)")),
              Case({up: "1x8"}, "1m"), for_s=30),
        Alert("ExporterDown", "nodes", 'up{job!~"node|probe-.*"} == 0', "warning",
              "The {{ $labels.job }} metrics of {{ $labels.node }} cannot be scraped",
              "Prometheus cannot scrape an exporter (or Patroni's API, or Alertmanager) for a minute: the "
              "alerts that read it are blind. `journalctl -u` the exporter on the node named (the PostgreSQL "
              "and Redis exporters run on the monitoring node).",
              Case({f'up{{job="redis", node="{s.redis[0].name}"}}': "0x8"}, "2m",
                   _one({"job": "redis", "node": s.redis[0].name},
                        f"The redis metrics of {s.redis[0].name} cannot be scraped")),
              Case({f'up{{job="node", node="{db}"}}': "0x8"}, "2m"), for_s=60),
        Alert("DiskFillingUp", "nodes",
              f"predict_linear(node_filesystem_avail_bytes{{{FS}}}[6h], 24 * 3600) < 0 and "
              f"node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}} < 0.4",
              "warning", "{{ $labels.mountpoint }} on {{ $labels.node }} fills up within a day at this rate",
              "At the rate of the last 6 hours the file system is full within a day, and it has less than "
              "40 % left. `du -xh --max-depth=2 / | sort -h | tail` on the node. Usual causes: WAL kept for "
              "a replica that is gone (PostgresSlotInactive) or that the archive cannot take "
              "(WalArchiveFailing), logs, Redis snapshots. Resize the plan in Cloud Manager if it is growth.",
              Case({f"node_filesystem_avail_bytes{fs}": "30000000000-50000000x200",
                    f"node_filesystem_size_bytes{fs}": "80000000000x200"}, "50m",
                   _one({"node": db, "mountpoint": "/", "fstype": "ext4"},
                        f"/ on {db} fills up within a day at this rate")),
              Case({f"node_filesystem_avail_bytes{fs}": "30000000000x200",
                    f"node_filesystem_size_bytes{fs}": "80000000000x200"}, "50m"), for_s=1800,
              anchor="diskfillingup"),
        Alert("DiskAlmostFull", "nodes",
              f"node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}} < 0.1",
              "critical", "{{ $labels.mountpoint }} on {{ $labels.node }} has less than 10 % free",
              "", Case({f"node_filesystem_avail_bytes{fs}": "5000000000x40",
                        f"node_filesystem_size_bytes{fs}": "80000000000x40"}, "6m",
                       _one({"node": db, "mountpoint": "/", "fstype": "ext4"}, f"/ on {db} has less than 10 % free")),
              Case({f"node_filesystem_avail_bytes{fs}": "9000000000x40",
                    f"node_filesystem_size_bytes{fs}": "80000000000x40"}, "6m"), for_s=300, anchor="diskfillingup"),
        Alert("MemoryLow", "nodes", "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.1", "warning",
              "{{ $labels.node }} has less than 10 % of its memory available",
              "Less than 10 % of the node's memory has been available for 10 minutes; the kernel's OOM killer "
              "is next. `ps aux --sort=-rss | head` on the node: the app server's workers (app_workers), "
              "PostgreSQL's work_mem times connections, Redis beyond maxmemory (RedisMemoryNearMax).",
              Case({f'node_memory_MemAvailable_bytes{{node="{db}"}}': "100x60",
                    f'node_memory_MemTotal_bytes{{node="{db}"}}': "2000x60"}, "12m",
                   _one({"node": db}, f"{db} has less than 10 % of its memory available")),
              Case({f'node_memory_MemAvailable_bytes{{node="{db}"}}': "500x60",
                    f'node_memory_MemTotal_bytes{{node="{db}"}}': "2000x60"}, "12m"), for_s=600),
        Alert("CpuSaturated", "nodes", '1 - avg by (node) (rate(node_cpu_seconds_total{mode="idle"}[5m])) > 0.9',
              "warning", "{{ $labels.node }}'s CPUs have been over 90 % busy for 15 minutes",
              "The node's CPUs have been more than 90 % busy for 15 minutes: requests queue. On app servers "
              "add one (`halgen scale app N`) or a larger plan; on a shared-CPU plan, steal time from "
              "neighbours counts as busy: a dedicated plan ends it.",
              Case({f'node_cpu_seconds_total{{node="{db}", cpu="0", mode="idle"}}': "0+0.5x120"}, "25m",
                   _one({"node": db}, f"{db}'s CPUs have been over 90 % busy for 15 minutes")),
              Case({f'node_cpu_seconds_total{{node="{db}", cpu="0", mode="idle"}}': "0+14x120"}, "25m"),
              for_s=900),
        Alert("UnitFailed", "nodes", 'node_systemd_unit_state{state="failed"} == 1', "warning",
              "{{ $labels.name }} on {{ $labels.node }} has failed",
              "A unit of the stack is in the failed state: systemd gave up restarting a service, or a "
              "scheduled job's last run failed (a backup, the restore test, the certificate; it stays failed "
              "until a run succeeds). `systemctl status NAME` and `journalctl -u NAME` on the node say why; "
              "`systemctl start NAME` runs a job again.",
              Case({f'node_systemd_unit_state{{node="{db}", name="patroni.service", state="failed"}}': "1x8"},
                   "2m", _one({"node": db, "name": "patroni.service", "state": "failed"},
                              f"patroni.service on {db} has failed")),
              Case({f'node_systemd_unit_state{{node="{db}", name="patroni.service", state="failed"}}': "0x8"},
                   "2m"), for_s=60),
        Alert("ClockSkew", "nodes", "abs(node_timex_offset_seconds) > 0.05 or node_timex_sync_status == 0",
              "warning", "{{ $labels.node }}'s clock is off or not synchronised",
              "The node's clock is more than 50 ms off or not synchronised for 10 minutes. Leader leases "
              "(Patroni, etcd), TLS and the logs' order depend on it: `timedatectl timesync-status`.",
              Case({f'node_timex_offset_seconds{{node="{db}"}}': "0.2x60",
                    f'node_timex_sync_status{{node="{db}"}}': "1x60"}, "12m",
                   _one({"node": db}, f"{db}'s clock is off or not synchronised")),
              Case({f'node_timex_offset_seconds{{node="{db}"}}': "0.001x60",
                    f'node_timex_sync_status{{node="{db}"}}': "1x60"}, "12m"), for_s=600),
        _job_late(s),
    ]


def _job_late(s: Stack) -> Alert:
    """One rule over every scheduled job, each with its own limit (Job.late_after_s), once
    Prometheus has known the timer that long (a timer that never ran reads 0, and a node's
    boot time is its host's in a container: neither can say since when a timer exists)."""
    late = {j.name: j.late_after_s for node in s.nodes for j in s.jobs(node)}
    metric = "node_systemd_timer_last_trigger_seconds"
    terms = [f'(time() - {metric}{{name="{s.project}-{name}.timer"}} > {seconds} '
             f'and on(node, name) {metric}{{name="{s.project}-{name}.timer"}} offset {seconds}s)'
             for name, seconds in sorted(late.items())]
    name, seconds = min(late.items(), key=lambda item: item[1])
    timer = f'{metric}{{node="{s.dbs[0].name}", name="{s.project}-{name}.timer"}}'
    steps = seconds // 15 + 8
    return Alert(
        "JobLate", "nodes", " or ".join(terms), "warning",
        "Timer {{ $labels.name }} on {{ $labels.node }} has not started its job when its schedule says it should have",
        "A scheduled job's timer has not run for longer than its schedule's longest gap plus its random delay "
        "and time limit: the timer is stopped or disabled (`systemctl list-timers`), or the node's clock is "
        "wrong. A run that fails is UnitFailed instead. (It needs Prometheus to keep metrics that long: "
        "mon_retention_days is checked against the longest such gap.)",
        Case({timer: f"0x{steps}"}, f"{steps * 15}s",
             _one({"node": s.dbs[0].name, "name": f"{s.project}-{name}.timer"},
                  f"Timer {s.project}-{name}.timer on {s.dbs[0].name} has not started its job when its schedule "
                  "says it should have")),
        Case({timer: f"0+15x{steps}"}, f"{steps * 15}s"))


def _web(s: Stack) -> list[Alert]:
    lb, app = s.lbs[0], s.apps[0]
    probe_lb = f'probe_success{{job="probe-lb", node="{lb.name}"}}'
    app_target = f"http://{app.instances[0].listen}{s.a.app_check_path}"
    probe_app = f'probe_success{{job="probe-app", node="{app.name}", instance="{app_target}"}}'
    found = [
        Alert("LoadBalancerDown", "web", 'probe_success{job="probe-lb"} == 0', "critical",
              f"Load balancer {{{{ $labels.node }}}} does not answer {s.a.lb_health_path}",
              "The monitoring node gets no 200 from the load balancer's own health path for 30 s: nginx is "
              "down or the node is. Clients that DNS sends there fail. `systemctl status nginx` and `nginx -t` "
              "on the node.",
              Case({probe_lb: "0x8"}, "1m", _one({"job": "probe-lb", "node": lb.name},
                                                 f"Load balancer {lb.name} does not answer {s.a.lb_health_path}")),
              Case({probe_lb: "1x8"}, "1m"), for_s=30),
        Alert("NginxDown", "web", "nginx_up == 0", "critical",
              "nginx on {{ $labels.node }} does not answer its exporter",
              "", Case({f'nginx_up{{job="nginx", node="{lb.name}"}}': "0x8"}, "1m",
                       _one({"job": "nginx", "node": lb.name}, f"nginx on {lb.name} does not answer its exporter")),
              Case({f'nginx_up{{job="nginx", node="{lb.name}"}}': "1x8"}, "1m"), for_s=30, anchor="loadbalancerdown"),
        Alert("AppInstanceDown", "web", 'probe_success{job="probe-app"} == 0', "warning",
              "App server instance {{ $labels.instance }} on {{ $labels.node }} fails its check",
              f"An app server instance fails its check path ({s.a.app_check_path}, the one HAProxy asks) for "
              "30 s; HAProxy has taken it out of rotation and the others serve. `systemctl status` and "
              "`journalctl -u` its unit on the node. All of them down is AllAppInstancesDown.",
              Case({probe_app: "0x8"}, "1m", _one({"job": "probe-app", "node": app.name, "instance": app_target},
                                                  f"App server instance {app_target} on {app.name} fails its check")),
              Case({probe_app: "1x8"}, "1m"), for_s=30),
        Alert("AllAppInstancesDown", "web", 'sum(probe_success{job="probe-app"}) == 0', "critical",
              "No app server instance passes its check: the site serves errors", "",
              Case({probe_app: "0x8"}, "1m", _one({}, "No app server instance passes its check: the site serves "
                                                      "errors")),
              Case({probe_app: "1x8"}, "1m"), for_s=30, anchor="appinstancedown"),
        Alert("Http5xxRatioHigh", "web", 'sum by (node) (rate(halgen_http_requests_total{status=~"5.."}[5m])) / '
              "sum by (node) (rate(halgen_http_requests_total[5m])) > 0.05", "warning",
              "{{ $value | humanizePercentage }} of the requests through {{ $labels.node }} end in a 5xx",
              "More than 5 % of the requests through a load balancer have ended in a 5xx for 5 minutes "
              "(mtail counts them in nginx's access log). 502/503/504: the app servers fail or are too few "
              "(AppInstanceDown, UpstreamLatencyHigh); 500: the app itself. The access log's us= and urt= "
              "fields say which upstream answered what.",
              Case({f'halgen_http_requests_total{{node="{lb.name}", status="200"}}': "0+75x60",
                    f'halgen_http_requests_total{{node="{lb.name}", status="502"}}': "0+25x60"}, "12m",
                   _one({"node": lb.name}, f"25% of the requests through {lb.name} end in a 5xx")),
              Case({f'halgen_http_requests_total{{node="{lb.name}", status="200"}}': "0+99x60",
                    f'halgen_http_requests_total{{node="{lb.name}", status="502"}}': "0+1x60"}, "12m"), for_s=300),
        Alert("UpstreamLatencyHigh", "web",
              "histogram_quantile(0.99, sum by (node, le) (rate(halgen_http_upstream_seconds_bucket[5m]))) > 2",
              "warning", "99 % of the app's answers through {{ $labels.node }} take up to {{ $value | humanize }} s",
              "The 99th percentile of the app's response time through a load balancer (HAProxy's queue "
              "included) has been over 2 s for 10 minutes: the app servers are saturated (CpuSaturated), "
              "a query is slow (PostgreSQL logs statements over 1 s), or a dependency is.",
              Case({f'halgen_http_upstream_seconds_bucket{{node="{lb.name}", le="1"}}': "0x60",
                    f'halgen_http_upstream_seconds_bucket{{node="{lb.name}", le="5"}}': "0+10x60",
                    f'halgen_http_upstream_seconds_bucket{{node="{lb.name}", le="+Inf"}}': "0+10x60"}, "12m",
                   _one({"node": lb.name}, f"99 % of the app's answers through {lb.name} take up to 4.96 s")),
              Case({f'halgen_http_upstream_seconds_bucket{{node="{lb.name}", le="1"}}': "0+10x60",
                    f'halgen_http_upstream_seconds_bucket{{node="{lb.name}", le="5"}}': "0+10x60",
                    f'halgen_http_upstream_seconds_bucket{{node="{lb.name}", le="+Inf"}}': "0+10x60"}, "12m"),
              for_s=600),
    ]
    if s.tls_lbs:
        expiry = f'probe_ssl_earliest_cert_expiry{{job="probe-certificate", node="{lb.name}"}}'
        found.append(Alert(
            "CertificateExpiring", "web",
            'probe_ssl_earliest_cert_expiry{job="probe-certificate"} - time() < 14 * 86400',
            "warning", f"{{{{ $labels.node }}}}'s certificate for {s.canonical_domain} expires in "
            "{{ $value | humanizeDuration }} (certbot renews at 30 days)",
            "The public certificate a load balancer serves expires within 14 days, so certbot's renewals "
            "(from 30 days before) have failed for two weeks. `certbot renew --dry-run` and "
            "`journalctl -u certbot` on the node: DNS no longer points there, or port 80 is blocked.",
            Case({expiry: "864000x4"}, "30s", _one({"job": "probe-certificate", "node": lb.name},
                                                   f"{lb.name}'s certificate for {s.canonical_domain} expires in "
                                                   "9d 23h 59m 30s (certbot renews at 30 days)")),
            Case({expiry: "5000000x4"}, "30s")))
    if s.certificate_probes:
        node, port = s.certificate_probes[0]
        expiry = f'probe_ssl_earliest_cert_expiry{{job="probe-vpc-certificate", node="{node.name}"}}'
        found.append(Alert(
            "VpcCertificateExpiring", "web",
            'probe_ssl_earliest_cert_expiry{job="probe-vpc-certificate"} - time() < 30 * 86400', "warning",
            "{{ $labels.node }}'s certificate from the stack CA expires in {{ $value | humanizeDuration }}",
            "A node's certificate from the stack CA (TLS inside the VPC) expires within 30 days; at expiry, "
            "replication and the app's connections to it fail. `halgen build` issues new ones: deploy the "
            "node's files from build/nodes/ and reload its services.",
            Case({expiry: "864000x4"}, "30s", _one({"job": "probe-vpc-certificate", "node": node.name},
                                                   f"{node.name}'s certificate from the stack CA expires in "
                                                   "9d 23h 59m 30s")),
            Case({expiry: "5000000x4"}, "30s")))
    return found


def _postgres(s: Stack) -> list[Alert]:
    db1 = s.dbs[0].name
    db2 = s.dbs[1].name if len(s.dbs) > 1 else "db2"  # a second primary needs a second node, even in a test
    replica = f'halgen_pg_is_replica{{job="postgres", node="{db1}"}}'
    failover = ("fails over by itself (Patroni): see PostgresPrimaryChanged" if s.patroni
                else "needs scripts/pg-failover.sh (manual failover)")
    found = [
        Alert("PostgresDown", "postgres", "pg_up == 0", "critical",
              "PostgreSQL on {{ $labels.node }} does not accept the monitoring login",
              "The node's PostgreSQL exporter (on the monitoring node) cannot log in for 30 s: PostgreSQL is "
              "down, refuses connections (max_connections), or the node is unreachable. A primary that is "
              f"down {failover}. "
              "`systemctl status patroni` (or postgresql@) and the PostgreSQL log on the node.",
              Case({f'pg_up{{job="postgres", node="{db1}"}}': "0x8"}, "1m",
                   _one({"job": "postgres", "node": db1}, f"PostgreSQL on {db1} does not accept the monitoring login")),
              Case({f'pg_up{{job="postgres", node="{db1}"}}': "1x8"}, "1m"), for_s=30),
        Alert("PostgresNoPrimary", "postgres", "(count(halgen_pg_is_replica == 0) or on() vector(0)) == 0", "critical",
              "No PostgreSQL node is the primary: writes fail",
              "For 30 s no PostgreSQL node answers as the primary. With Patroni a replica is promoted within "
              "about 15 s of a primary's loss; this alert means it did not happen: no replica is healthy "
              "enough, or etcd has lost its quorum (`patronictl -c /etc/patroni/config.yml list`, "
              "`etcdctl endpoint health`). Several primaries (PostgresTwoPrimaries) means a split brain: "
              "stop the one the applications should not write to.",
              Case({replica: "1x8"}, "1m", _one({}, "No PostgreSQL node is the primary: writes fail")),
              Case({replica: "0x8"}, "1m"), for_s=30),
        Alert("PostgresTwoPrimaries", "postgres", "count(halgen_pg_is_replica == 0) > 1", "critical",
              "{{ $value }} PostgreSQL nodes act as the primary", "",
              Case({replica: "0x8", f'halgen_pg_is_replica{{job="postgres", node="{db2}"}}': "0x8"}, "1m",
                   _one({}, "2 PostgreSQL nodes act as the primary")),
              Case({replica: "0x8"}, "1m"), for_s=30, anchor="postgresnoprimary"),
        Alert("PostgresPrimaryChanged", "postgres",
              "changes(halgen_pg_is_replica[10m]) > 0 and halgen_pg_is_replica == 0",
              "warning", "{{ $labels.node }} became the PostgreSQL primary in the last 10 minutes "
              "(a failover or switchover)",
              "A replica became the primary (a failover, or a switchover someone ran); it resolves after "
              "10 minutes. Find out why the old primary lost its role (its PostgreSQL and Patroni logs), and "
              "check that it follows the new one (PostgresReplicaMissing). The app servers reconnect by "
              "themselves (libpq's target_session_attrs).",
              Case({replica: "1x4 0x8"}, "2m", _one({"job": "postgres", "node": db1},
                                                   f"{db1} became the PostgreSQL primary in the last 10 minutes "
                                                   "(a failover or switchover)")),
              Case({replica: "0x40"}, "10m")),
    ]
    if len(s.dbs) > 1:
        replicas = len(s.dbs) - 1
        streamed = "pg_stat_replication_pg_wal_lsn_diff"
        lag = f'pg_stat_replication_pg_wal_lsn_diff{{job="postgres", node="{db1}", application_name="{db2}"}}'
        slot = f'pg_replication_slots_active{{job="postgres", node="{db1}", slot_name="{db2}"}}'
        found += [
            Alert("PostgresReplicaMissing", "postgres",
                  f"(count(pg_stat_replication_pg_wal_lsn_diff) or on() vector(0)) < {replicas}", "warning",
                  f"The primary streams to {{{{ $value }}}} of its {replicas} replicas",
                  "Fewer replicas stream from the primary than there are replicas, for 2 minutes: one is "
                  "down, cannot reach the primary, or (after a failover) does not follow the new one. "
                  "`patronictl -c /etc/patroni/config.yml list` shows each member's state; a member that cannot "
                  "rejoin is rebuilt with `patronictl reinit`.",
                  Case({}, "3m", _one({}, f"The primary streams to 0 of its {replicas} replicas")),
                  Case({f'{streamed}{{job="postgres", node="{db1}", application_name="{n.name}"}}': "0x12"
                        for n in s.dbs[1:]}, "3m"), for_s=120),
            Alert("PostgresReplicationLagBytes", "postgres", "pg_stat_replication_pg_wal_lsn_diff > 64 * 1024 * 1024",
                  "warning", "A replica ({{ $labels.application_name }}) is {{ $value | humanize1024 }}B of WAL "
                  "behind the primary {{ $labels.node }}",
                  "A replica has been more than 64 MB (or, PostgresReplicationLagSeconds, 30 s) behind the "
                  "primary for 2 minutes: its disk or network is too slow for the write load, or a long query "
                  "on it holds replay back. A lagging replica is not promoted (Patroni's maximum_lag_on_failover).",
                  Case({lag: "134217728x12"}, "3m", _one({"job": "postgres", "node": db1, "application_name": db2},
                                                         f"A replica ({db2}) is 128MiB of WAL behind the primary "
                                                         f"{db1}")),
                  Case({lag: "1024x12"}, "3m"), for_s=120, anchor="postgresreplicationlag"),
            Alert("PostgresReplicationLagSeconds", "postgres", "halgen_pg_lag_seconds > 30", "warning",
                  "Replica {{ $labels.node }} replays {{ $value }} s behind what it received", "",
                  Case({f'halgen_pg_lag_seconds{{job="postgres", node="{db2}"}}': "45x12"}, "3m",
                       _one({"job": "postgres", "node": db2}, f"Replica {db2} replays 45 s behind what it received")),
                  Case({f'halgen_pg_lag_seconds{{job="postgres", node="{db2}"}}': "0x12"}, "3m"), for_s=120,
                  anchor="postgresreplicationlag"),
            Alert("PostgresSlotInactive", "postgres",
                  "pg_replication_slots_active == 0 and on(node) halgen_pg_is_replica == 0", "warning",
                  "Replication slot {{ $labels.slot_name }} on the primary {{ $labels.node }} has no replica: "
                  "it keeps WAL for it",
                  "A replication slot on the primary has had no replica for 2 minutes; the primary keeps WAL "
                  "for it (up to max_slot_wal_keep_size, then the replica must be rebuilt). Bring the replica "
                  "back; a slot for a node that is gone for good is dropped by Patroni when the member is removed.",
                  Case({slot: "0x12", replica: "0x12"}, "3m",
                       _one({"job": "postgres", "node": db1, "slot_name": db2},
                            f"Replication slot {db2} on the primary {db1} has no replica: it keeps WAL for it")),
                  Case({slot: "1x12", replica: "0x12"}, "3m"), for_s=120),
        ]
    archiver = f'{{job="postgres", node="{db1}"}}'
    found += [
        Alert("WalArchiveFailing", "postgres", "increase(pg_stat_archiver_failed_count[5m]) > 0", "critical",
              "{{ $labels.node }} cannot archive WAL to Object Storage: it piles up on its disk, and "
              "point-in-time recovery stops at the last archived segment",
              "PostgreSQL's archive_command (pgBackRest archive-push) failed in the last 5 minutes. Until it "
              "works again WAL piles up on the primary's disk (DiskFillingUp is next) and no backup can "
              "restore past the last archived segment. The PostgreSQL log says why; usually the Object "
              "Storage key (OBJ_PG_* in secrets/secrets.env: rebuild and deploy the node's pgBackRest "
              "secrets), the bucket, or the endpoint. `pgbackrest --stanza=main check` on the primary "
              "tests the whole path.",
              Case({f"pg_stat_archiver_failed_count{archiver}": "0 0 1 2 3 4"}, "1m",
                   _one({"job": "postgres", "node": db1},
                        f"{db1} cannot archive WAL to Object Storage: it piles up on its disk, and point-in-time "
                        "recovery stops at the last archived segment")),
              Case({f"pg_stat_archiver_failed_count{archiver}": "3x8"}, "1m"), anchor="walarchivefailing"),
        Alert("WalArchiveStale", "postgres",
              "pg_stat_archiver_last_archive_age > 300 and on(node) halgen_pg_is_replica == 0",
              "critical", "The primary {{ $labels.node }} archived no WAL for {{ $value | humanizeDuration }} "
              "(archive_timeout is 60 s)", "",
              Case({f"pg_stat_archiver_last_archive_age{archiver}": "600x8", replica: "0x8"}, "1m",
                   _one({"job": "postgres", "node": db1},
                        f"The primary {db1} archived no WAL for 10m 0s (archive_timeout is 60 s)")),
              Case({f"pg_stat_archiver_last_archive_age{archiver}": "600x8", replica: "1x8"}, "1m"), for_s=60,
              anchor="walarchivefailing"),
        Alert("PostgresConnectionsHigh", "postgres",
              "sum by (node) (pg_stat_activity_count) / on(node) pg_settings_max_connections > 0.8", "warning",
              "{{ $labels.node }} uses {{ $value | humanizePercentage }} of max_connections",
              "More than 80 % of max_connections have been in use for 5 minutes; at 100 % new connections "
              "fail. Each app worker holds one connection per process: app servers × instances × workers "
              "must stay below pg_max_connections (halgen lint checks it, HAL405). Look for idle-in-transaction "
              "sessions in pg_stat_activity.",
              Case({f'pg_stat_activity_count{{job="postgres", node="{db1}", datname="app", state="idle"}}': "90x40",
                    f'pg_settings_max_connections{{job="postgres", node="{db1}"}}': "100x40"}, "6m",
                   _one({"node": db1}, f"{db1} uses 90% of max_connections")),
              Case({f'pg_stat_activity_count{{job="postgres", node="{db1}", datname="app", state="idle"}}': "20x40",
                    f'pg_settings_max_connections{{job="postgres", node="{db1}"}}': "100x40"}, "6m"), for_s=300),
    ]
    found += _backup_alerts(s, "pg", "PostgreSQL", db1)
    if s.patroni:
        found += [
            Alert("PatroniDown", "postgres", 'up{job="patroni"} == 0', "critical",
                  "Patroni on {{ $labels.node }} does not answer (its PostgreSQL takes no part in failover)",
                  "Patroni's REST API on the node does not answer for 30 s. Without Patroni the node's "
                  "PostgreSQL is neither promoted nor demoted; if it was the primary, Patroni on another "
                  "node takes the lock once it expires. `systemctl status patroni`, `journalctl -u patroni`.",
                  Case({f'up{{job="patroni", node="{db1}"}}': "0x8"}, "1m",
                       _one({"job": "patroni", "node": db1},
                            f"Patroni on {db1} does not answer (its PostgreSQL takes no part in failover)")),
                  Case({f'up{{job="patroni", node="{db1}"}}': "1x8"}, "1m"), for_s=30),
            Alert("PatroniNoLeader", "postgres", "(sum(patroni_primary) or on() vector(0)) == 0", "critical",
                  "No Patroni member holds the leader lock", "",
                  Case({f'patroni_primary{{job="patroni", node="{db1}"}}': "0x8"}, "1m",
                       _one({}, "No Patroni member holds the leader lock")),
                  Case({f'patroni_primary{{job="patroni", node="{db1}"}}': "1x8"}, "1m"), for_s=30,
                  anchor="postgresnoprimary"),
        ]
    return found


def _backup_alerts(s: Stack, kind: str, title: str, node: str) -> list[Alert]:
    late = s.backup_late_after_s(kind)
    metric = f'halgen_backup_completed_timestamp_seconds{{kind="{kind}"}}'
    series = f'halgen_backup_completed_timestamp_seconds{{node="{node}", kind="{kind}"}}'
    hours = round(late / 3600, 1)
    steps = late // LONG + 1
    at = steps * LONG  # the first evaluation after the limit
    name, group = {"pg": ("Postgres", "postgres"), "redis": ("Redis", "redis")}[kind]
    runbook = ("The newest backup in the bucket (as pgBackRest or restic reports it, on every node of the "
               "tier after each scheduled run) is older than the schedule allows: the backups fail "
               "(UnitFailed says where) or do not run (JobLate). With no backup at all seen since the "
               "schedule's longest gap, the Missing alert fires. Run the backup job by hand on the primary "
               "or master (`systemctl start PROJECT-pg-backup-full`, `PROJECT-redis-backup`) and read its "
               "journal.") if kind == "pg" else ""
    return [
        Alert(f"{name}BackupTooOld", group, f"time() - max({metric}) > {late}", "critical",
              f"The newest {title} backup in the bucket is {{{{ $value | humanizeDuration }}}} old (the schedule "
              f"allows {hours} h)", runbook,
              Case({series: f"0x{steps + 2}"}, f"{at}s",
                   _one({}, f"The newest {title} backup in the bucket is {_duration(at)} old (the schedule "
                            f"allows {hours} h)"), LONG),
              Case({series: f"0+{LONG}x{steps + 2}"}, f"{at}s", (), LONG), anchor="backuptooold"),
        Alert(f"{name}BackupMissing", group, f"absent({metric})", "critical",
              f"No node has seen a {title} backup in the bucket since the schedule's longest gap", "",
              Case({}, f"{at + LONG}s", _one({"kind": kind}, f"No node has seen a {title} backup in the bucket "
                                                              "since the schedule's longest gap"), LONG),
              Case({series: f"0+{LONG}x{steps + 3}"}, f"{at + LONG}s", (), LONG), for_s=late, anchor="backuptooold"),
    ]


def _duration(seconds: int) -> str:
    """Prometheus' humanizeDuration of whole seconds."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m {secs}s"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s"


def _redis(s: Stack) -> list[Alert]:
    r1 = s.redis[0].name
    r2 = s.redis[1].name if len(s.redis) > 1 else "redis2"
    info = 'redis_instance_info{{job="redis", node="{}", role="{}"}}'
    fails_over = "fails over to a replica by Sentinel" if s.sentinels else "stays down until you restart it"
    found = [
        Alert("RedisDown", "redis", 'redis_up{job="redis"} == 0', "critical",
              "Redis on {{ $labels.node }} does not answer",
              "The Redis exporter (on the monitoring node) gets no answer from the node's Redis for 30 s. A "
              f"master that is down {fails_over} "
              f"(RedisMasterChanged). `systemctl status {s.project}-redis` and its journal on the node.",
              Case({f'redis_up{{job="redis", node="{r1}"}}': "0x8"}, "1m",
                   _one({"job": "redis", "node": r1}, f"Redis on {r1} does not answer")),
              Case({f'redis_up{{job="redis", node="{r1}"}}': "1x8"}, "1m"), for_s=30),
        Alert("RedisNoMaster", "redis",
              '(count(redis_instance_info{job="redis", role="master"}) or on() vector(0)) == 0',
              "critical", "No Redis node is the master: writes fail",
              "No Redis node has answered as the master for 30 s (or, RedisTwoMasters, more than one has for a "
              "minute). Sentinel promotes a replica within seconds when a quorum of Sentinels sees the master "
              "down (SentinelQuorumLost says when it cannot). `redis-cli -p 26379 SENTINEL masters` on a Sentinel "
              "node. Two masters after a partition: the one Sentinel does not name is reconfigured when it "
              "comes back.",
              Case({info.format(r1, "slave"): "1x8"}, "1m", _one({}, "No Redis node is the master: writes fail")),
              Case({info.format(r1, "master"): "1x8"}, "1m"), for_s=30),
        Alert("RedisTwoMasters", "redis", 'count(redis_instance_info{job="redis", role="master"}) > 1', "critical",
              "{{ $value }} Redis nodes act as the master", "",
              Case({info.format(r1, "master"): "1x8", info.format(r2, "master"): "1x8"}, "2m",
                   _one({}, "2 Redis nodes act as the master")),
              Case({info.format(r1, "master"): "1x8"}, "2m"), for_s=60, anchor="redisnomaster"),
        Alert("RedisMasterChanged", "redis",
              'redis_instance_info{job="redis", role="master"} unless on(node) '
              'redis_instance_info{job="redis", role="master"} offset 10m and on(node) '
              'redis_instance_info{job="redis"} offset 10m', "warning",
              "{{ $labels.node }} became the Redis master in the last 10 minutes (a Sentinel failover)",
              "A Redis replica became the master (Sentinel failed over); it resolves after 10 minutes. Find out "
              "why the old master was lost, and check that it came back as a replica (RedisReplicaLinkDown).",
              Case({info.format(r1, "slave"): "1x44 _x40", info.format(r1, "master"): "_x44 1x40"}, "12m",
                   _one({"job": "redis", "node": r1, "role": "master"},
                        f"{r1} became the Redis master in the last 10 minutes (a Sentinel failover)")),
              Case({info.format(r1, "master"): "1x84"}, "12m")),
    ]
    if len(s.redis) > 1:
        found.append(Alert(
            "RedisReplicaLinkDown", "redis", 'redis_master_link_up{job="redis"} == 0', "warning",
            "Redis replica {{ $labels.node }} has lost its master",
            "A replica's link to its master has been down for a minute: it serves stale data and cannot "
            "be promoted safely. Its log (`journalctl -u PROJECT-redis`) says why: the master is down, or the "
            "replication user's password (REDIS_REPLICATION_PASSWORD) differs.",
            Case({f'redis_master_link_up{{job="redis", node="{r2}"}}': "0x8"}, "2m",
                 _one({"job": "redis", "node": r2}, f"Redis replica {r2} has lost its master")),
            Case({f'redis_master_link_up{{job="redis", node="{r2}"}}': "1x8"}, "2m"), for_s=60))
    found += [
        Alert("RedisMemoryNearMax", "redis",
              "redis_memory_used_bytes / redis_memory_max_bytes > 0.9 and redis_memory_max_bytes > 0",
              "warning", "Redis on {{ $labels.node }} uses {{ $value | humanizePercentage }} of maxmemory",
              f"Redis has used more than 90 % of maxmemory for 5 minutes; at 100 % it applies its eviction "
              f"policy ({s.a.redis_maxmemory_policy}). A larger redis_plan raises maxmemory; or the app keeps "
              "keys without an expiry.",
              Case({f'redis_memory_max_bytes{{job="redis", node="{r1}"}}': "1000x40",
                    f'redis_memory_used_bytes{{job="redis", node="{r1}"}}': "950x40"}, "6m",
                   _one({"job": "redis", "node": r1}, f"Redis on {r1} uses 95% of maxmemory")),
              Case({f'redis_memory_max_bytes{{job="redis", node="{r1}"}}': "1000x40",
                    f'redis_memory_used_bytes{{job="redis", node="{r1}"}}': "500x40"}, "6m"), for_s=300),
        Alert("RedisPersistenceFailing", "redis",
              "redis_rdb_last_bgsave_status == 0 or redis_aof_last_write_status == 0",
              "critical", "Redis on {{ $labels.node }} cannot write its snapshot or append-only file",
              "Redis failed to write its RDB snapshot or append-only file for a minute (a full disk, "
              "permissions); with AOF failing it refuses writes. Its log says which; DiskAlmostFull is "
              "likely too.",
              Case({f'redis_rdb_last_bgsave_status{{job="redis", node="{r1}"}}': "0x8"}, "2m",
                   _one({"job": "redis", "node": r1}, f"Redis on {r1} cannot write its snapshot or append-only file")),
              Case({f'redis_rdb_last_bgsave_status{{job="redis", node="{r1}"}}': "1x8"}, "2m"), for_s=60),
    ]
    found += _backup_alerts(s, "redis", "Redis", r1)
    if s.sentinels:
        quorum, total = s.sentinel_quorum, len(s.sentinels)
        sentinel = s.sentinels[0].name
        ok = f'redis_sentinel_master_ok_sentinels{{job="sentinel", node="{sentinel}", master_name="{s.project}"}}'
        found += [
            Alert("SentinelQuorumLost", "redis",
                  f"(max(redis_sentinel_master_ok_sentinels) or on() vector(0)) < {quorum}", "critical",
                  f"Fewer than {quorum} Sentinels agree on the master: no automatic Redis failover",
                  f"Fewer than the quorum ({quorum} of {total}) Sentinels are up and see each other for 30 s "
                  "(or, SentinelMissing, one or more of them is down): a lost master is not replaced. "
                  f"`systemctl status {s.project}-sentinel` on the Sentinel nodes "
                  f"({', '.join(n.name for n in s.sentinels)}).",
                  Case({ok: f"{quorum - 1}x8"}, "1m",
                       _one({}, f"Fewer than {quorum} Sentinels agree on the master: no automatic Redis failover")),
                  Case({ok: f"{total}x8"}, "1m"), for_s=30),
            Alert("SentinelMissing", "redis", f"max(redis_sentinel_master_ok_sentinels) < {total}", "warning",
                  f"Only {{{{ $value }}}} of {total} Sentinels are up", "",
                  Case({ok: f"{total - 1}x12"}, "3m", _one({}, f"Only {total - 1} of {total} Sentinels are up")),
                  Case({ok: f"{total}x12"}, "3m"), for_s=120, anchor="sentinelquorumlost"),
        ]
    return found


@dataclass(frozen=True)
class Runbook:
    anchor: str  # README.md#alert-<anchor>
    title: str
    alerts: tuple[Alert, ...]
    text: str


def runbooks(stack: Stack) -> list[Runbook]:
    """The README's runbook paragraphs, one per anchor (alerts that share one share its text);
    each heading's title is the alert name that makes its anchor."""
    by_anchor: dict[str, list[Alert]] = {}
    for alert in alerts(stack):
        by_anchor.setdefault(alert.runbook_anchor.split("#alert-")[1], []).append(alert)
    found = []
    for anchor, members in by_anchor.items():
        named = next(a.name for a in members if anchor in a.name.lower())
        start = named.lower().index(anchor)
        found.append(Runbook(anchor, named[start:start + len(anchor)], tuple(members),
                             next(a.runbook for a in members if a.runbook)))
    return found
