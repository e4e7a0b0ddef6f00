"""Monitoring: the monitoring node watches every node and service, and Prometheus' own
tools (promtool, amtool, mtail, the blackbox exporter) accept its files."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from halgen.errors import Problem
from halgen.lint.registry import rule
from halgen.lint.repo import Repo

_TIMEOUT = 120


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, cwd=cwd)


def _said(out: subprocess.CompletedProcess[str], root: Path) -> str:
    """The last lines of what a tool said, paths relative to the repo."""
    lines = [line.strip() for line in (out.stderr + "\n" + out.stdout).splitlines() if line.strip()]
    return " ".join(lines[-3:]).replace(f"{root}/", "")


def _prometheus_configs(repo: Repo) -> list[str]:
    return repo.glob(r"nodes/[^/]+/etc/prometheus/prometheus\.yml")


def _alert_names(repo: Repo, rel: str) -> dict[str, int]:
    """Alert names of a rule file -> line."""
    return {match.group(1): repo.text(rel)[:match.start()].count("\n") + 1
            for match in re.finditer(r"^\s*-\s*alert:\s*(\S+)", repo.text(rel), re.M)}


@rule("HAL414", "monitoring-coverage", "error", "consistency")
def monitoring_coverage(repo: Repo) -> Iterator[Problem]:
    """Prometheus scrapes every node, every DB node's PostgreSQL and every Redis, and every alert rule has a test.

    A node missing from prometheus.yml (one added by `halgen scale` and the
    file edited since, say) fails without an alert; an alert without a
    promtool test may never fire. Regenerate the monitoring node's files, or
    add the test to monitoring/*.test.yml.
    """
    stack = repo.stack
    if stack is None or not stack.mons:
        return
    for rel in _prometheus_configs(repo):
        try:
            config = YAML(typ="safe").load(repo.text(rel)) or {}
        except YAMLError:
            continue  # HAL509 reports it
        jobs = {job.get("job_name"): job for job in config.get("scrape_configs") or [] if isinstance(job, dict)}

        for job, nodes in (("node", stack.nodes), ("postgres", stack.dbs), ("redis", stack.redis),
                           ("sentinel", stack.sentinels), ("nginx", stack.lbs), ("probe-app", stack.apps)):
            scraped = {str((static.get("labels") or {}).get("node", ""))
                       for static in (jobs.get(job) or {}).get("static_configs") or []}
            for node in nodes:
                if node.name not in scraped:
                    yield Problem(rel, repo.line_of(rel, rf"job_name:\s*{re.escape(job)}\b"),
                                  f"{node.name} is not in scrape job {job!r}: its failures raise no alert")
    tested: set[str] = set()
    for rel in repo.glob(r"monitoring/[^/]+\.test\.yml"):
        tested |= set(re.findall(r"^\s*alertname:\s*(\S+)", repo.text(rel), re.M))
    for rel in repo.glob(r"nodes/[^/]+/etc/prometheus/rules/[^/]+\.yml"):
        for name, line in _alert_names(repo, rel).items():
            if name not in tested:
                yield Problem(rel, line, f"alert {name} has no test in monitoring/*.test.yml")


@rule("HAL509", "promtool", "error", "tools", programs=("promtool",))
def promtool(repo: Repo) -> Iterator[Problem]:
    """`promtool` accepts prometheus.yml and the alert rules, and the rules pass their unit tests.

    Prometheus refuses to start on a configuration it cannot load and keeps
    its old rules on a reload that fails; a rule whose expression is wrong
    loads and never fires. The tests (monitoring/*.test.yml) make each alert
    fire on one set of series and stay quiet on another.
    """
    for rel in _prometheus_configs(repo):
        out = _run(["promtool", "check", "config", "--syntax-only", str(repo.root / rel)])
        if out.returncode != 0:
            yield Problem(rel, 1, f"promtool check config: {_said(out, repo.root)}")
    for rel in repo.glob(r"nodes/[^/]+/etc/prometheus/rules/[^/]+\.yml"):
        out = _run(["promtool", "check", "rules", str(repo.root / rel)])
        if out.returncode != 0:
            yield Problem(rel, 1, f"promtool check rules: {_said(out, repo.root)}")
    tests = repo.glob(r"monitoring/[^/]+\.test\.yml")
    # One promtool per test file, side by side: the days-long cases take seconds each.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        outs = list(pool.map(lambda rel: _run(["promtool", "test", "rules", rel], cwd=repo.root), tests))
    for rel, out in zip(tests, outs, strict=True):
        for failed in re.findall(r"name: (.+?),\s*\n\s*alertname: (\S+?),", out.stdout + out.stderr):
            name, alert = failed
            yield Problem(rel, repo.line_of(rel, rf"name: '{re.escape(name)}'"), f"test {name!r} fails: "
                          f"alert {alert} does not do what the test expects (promtool test rules {rel})")
        if out.returncode != 0 and "FAILED" not in out.stdout + out.stderr:
            yield Problem(rel, 1, f"promtool test rules: {_said(out, repo.root)}")


@rule("HAL510", "amtool", "error", "tools", programs=("amtool",))
def amtool(repo: Repo) -> Iterator[Problem]:
    """`amtool check-config` accepts alertmanager.yml.

    Alertmanager refuses to start (or to reload) on a configuration it cannot
    load, and then no alert reaches anyone.
    """
    for rel in repo.glob(r"nodes/[^/]+/etc/prometheus/alertmanager\.yml"):
        out = _run(["amtool", "check-config", str(repo.root / rel)])
        if out.returncode != 0:
            yield Problem(rel, 1, f"amtool check-config: {_said(out, repo.root)}")


@rule("HAL511", "mtail-programs", "error", "tools", programs=("mtail",))
def mtail_programs(repo: Repo) -> Iterator[Problem]:
    """mtail compiles the programs that read nginx's access log.

    mtail skips a program that does not compile and logs why where nobody
    looks: the status-code and latency metrics (and their alerts) go quiet.
    """
    for node in repo.node_dirs:
        if not repo.node_files(node, r"etc/mtail/[^/]+\.mtail"):
            continue
        rel = f"nodes/{node}/etc/mtail"
        out = _run(["mtail", "--compile_only", "--logtostderr", "--progs", str(repo.root / rel), "--port", "0"])
        if out.returncode != 0:
            yield Problem(rel, 1, f"mtail --compile_only: {_said(out, repo.root)}")


@rule("HAL512", "blackbox-config", "error", "tools", programs=("prometheus-blackbox-exporter",))
def blackbox_config(repo: Repo) -> Iterator[Problem]:
    """The blackbox exporter accepts its probe modules (blackbox.yml).

    An exporter that cannot load its modules does not start, and every health
    probe (load balancers, app instances, certificates) fails at once.
    """
    for rel in repo.glob(r"nodes/[^/]+/etc/prometheus/blackbox\.yml"):
        out = _run(["prometheus-blackbox-exporter", "--config.check", f"--config.file={repo.root / rel}"])
        if out.returncode != 0:
            yield Problem(rel, 1, f"blackbox exporter --config.check: {_said(out, repo.root)}")
