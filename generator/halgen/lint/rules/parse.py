"""Each file parses the way its program will read it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from halgen.errors import Problem
from halgen.formats import cron, pghba
from halgen.formats.pghba import HBA_TYPES
from halgen.lint import effective
from halgen.lint.registry import rule
from halgen.lint.repo import Repo, node_of

# pg_hba also takes host names and '.domain' suffixes (matched by reverse DNS).
_HOSTNAME = re.compile(r"\.?[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*")
# Sections systemd knows in a .service file.
_UNIT_SECTIONS = {"service": {"Unit", "Service", "Install"}, "timer": {"Unit", "Timer", "Install"}}


@rule("HAL101", "nginx-syntax", "error", "parse")
def nginx_syntax(repo: Repo) -> Iterator[Problem]:
    """Every nginx.conf and file it includes parses, with only directives Debian's nginx knows, in the right context.

    crossplane parses the file strictly (its directive table extended with what
    Debian 12's nginx 1.22 adds), so a typo, a directive in the wrong block or a
    wrong number of arguments is caught without a server. Fix the line named.
    """
    for rel in repo.nginx_confs():
        for config in repo.nginx(rel).get("config", []):
            for err in config.get("errors", []):
                yield Problem(rel, err.get("line") or 1, err["error"].replace(str(repo.root / rel), rel))
        for file, line, message in effective.nginx_included_errors(repo, rel):
            yield Problem(file, line, message)


@rule("HAL102", "cloud-init-yaml", "error", "parse")
def cloud_init_yaml(repo: Repo) -> Iterator[Problem]:
    """Every cloud-init.yaml is a '#cloud-config' YAML mapping without a write_files key of its own.

    cloud-init ignores user-data that does not start with '#cloud-config', and
    silently skips a document that is not valid YAML: the node boots bare. The
    tracked file is the readable part of the node's user-data; `halgen build`
    adds write_files (the node's files) to make the pasteable document, so a
    write_files key of the file's own would be a duplicate key.
    """
    for rel in repo.cloud_inits():
        text = repo.text(rel)
        if not text.startswith("#cloud-config\n"):
            yield Problem(rel, 1, "first line must be '#cloud-config'")
        data, error = repo.yaml(rel)
        if error:
            yield Problem(rel, error[0], f"not valid YAML: {error[1]}")
            continue
        if not isinstance(data, dict):
            yield Problem(rel, 1, "not a YAML mapping")
            continue
        if "write_files" in data:
            yield Problem(rel, repo.line_of(rel, r"^write_files\s*:"), "write_files is added by 'halgen build' (it "
                          f"carries the node's files): put extra files under nodes/{node_of(rel)}/ instead")


@rule("HAL103", "systemd-unit-syntax", "error", "parse")
def systemd_unit_syntax(repo: Repo) -> Iterator[Problem]:
    """Every systemd service and timer is made of known [Sections] and Key=Value lines, and a service has ExecStart.

    systemd skips lines it cannot parse with a warning in the journal nobody
    reads; a unit without ExecStart= does not start at all. Fix the line named.
    """
    for rel in repo.units() + repo.timers():
        entries, errors = repo.unit(rel)
        kind = rel.rsplit(".", 1)[1]
        for line, message in errors:
            yield Problem(rel, line, message)
        for entry in entries:
            if entry.section not in _UNIT_SECTIONS[kind]:
                yield Problem(rel, entry.line, f"unknown section [{entry.section}] in a .{kind} unit")
                break
        if kind == "service" and not any(e.section == "Service" and e.key == "ExecStart" for e in entries):
            yield Problem(rel, 1, "no ExecStart= in [Service]")


@rule("HAL104", "postgresql-conf-syntax", "error", "parse")
def postgresql_conf_syntax(repo: Repo) -> Iterator[Problem]:
    """Every postgresql.conf line (and its included files') is 'name = value' with balanced quotes, each name set once.

    PostgreSQL refuses to start on a line it cannot parse, and when a name is
    set twice the later line silently wins, so the earlier one is a trap for
    whoever edits it. Fix or remove the line named.
    """
    for rel in repo.pg_confs():
        config = effective.pg(repo, rel)
        for file in config.files:
            _settings, errors, shadowing = repo.pg_conf(file)
            for line, message in errors:
                yield Problem(file, line, message)
            for setting in shadowing:
                yield Problem(file, setting.line, f"{setting.name} is set again here; only this line takes effect")
        for setting in config.shadowing:
            yield Problem(setting.file, setting.line, f"{setting.name} is set again here (it is also set in an "
                          "earlier file); only this line takes effect")


@rule("HAL105", "pg-hba-syntax", "error", "parse")
def pg_hba_syntax(repo: Repo) -> Iterator[Problem]:
    """Every pg_hba.conf line has a known type, enough fields, a valid address and a known method.

    A bad pg_hba.conf line makes PostgreSQL refuse to load the whole file at
    start, or keep the old rules on reload. Fix the line named.
    """
    import ipaddress

    read = {e.file for rel in effective.hba_files(repo) for e in effective.hba_entries(repo, rel)[0]}
    for rel in sorted(read | set(effective.hba_files(repo))):
        entries, errors = repo.hba(rel)
        for line, message in errors:
            yield Problem(rel, line, message)
        found = re.search(r"/postgresql/(\d+)/", rel)
        version = int(found.group(1)) if found else 16
        for line, directive, _ in pghba.includes(repo.text(rel)) if version < 16 else ():
            yield Problem(rel, line, f"{directive} in pg_hba.conf needs PostgreSQL 16 (this is {version})")
        for entry in entries:
            if entry.type in HBA_TYPES - {"local"} and entry.address not in {"all", "samehost", "samenet"} \
                    and not _HOSTNAME.fullmatch(entry.address):
                try:
                    ipaddress.ip_network(entry.address.split()[0], strict=True)
                except ValueError as err:
                    yield Problem(rel, entry.line, f"bad address {entry.address!r}: {err}")


@rule("HAL106", "redis-conf-syntax", "error", "parse")
def redis_conf_syntax(repo: Repo) -> Iterator[Problem]:
    """Every redis.conf and sentinel.conf line (and its included files') splits into words with balanced quotes,
    and names a known directive.

    redis-server and redis-sentinel refuse to start on an unknown directive or
    an unbalanced quote ("Bad directive or wrong number of arguments").
    """
    known = _redis_directives()
    configs = repo.redis_confs() + repo.sentinel_confs()
    read = sorted({d.file for rel in configs for d in effective.redis(repo, rel).directives if d.file} | set(configs))
    for rel in read:  # each file once, however many configs include it
        directives, errors = repo.redis(rel)
        for line, message in errors:
            yield Problem(rel, line, message)
        for directive in directives:
            base = directive.name if directive.name.startswith("sentinel ") else directive.name.split()[0]
            if base not in known:
                yield Problem(rel, directive.line, f"unknown directive {base!r}")


@rule("HAL107", "json-syntax", "error", "parse")
def json_syntax(repo: Repo) -> Iterator[Problem]:
    """inventory.json and firewalls/*.json are valid JSON.

    The firewall files are meant for the Linode API (`linode-cli firewalls create
    --rules ...`); a broken one fails there, after you thought you were done.
    """
    for rel in repo.glob(r"inventory\.json|firewalls/[^/]+\.json"):
        try:
            json.loads(repo.text(rel))
        except json.JSONDecodeError as err:
            yield Problem(rel, err.lineno, f"not valid JSON: {err.msg}")


@rule("HAL108", "cron-schedule", "error", "parse")
def cron_schedule(repo: Repo) -> Iterator[Problem]:
    """Every /etc/cron.d line is a schedule cron accepts and can fire, a user and a command.

    cron skips a line with a field out of range (minute 60, weekday 8) and keeps
    a schedule that can never fire (the 31st of February) without a word: the
    backup it runs never happens, and nothing says so. Fix the schedule answer
    (`backup_schedule` and the other `*_schedule` fields) and re-render.
    """
    for rel in repo.glob(r"nodes/[^/]+/etc/cron\.d/[^/]+"):
        for line, message in cron.cron_d(repo.text(rel))[1]:
            yield Problem(rel, line, f"cron: {message}")


def _redis_directives() -> frozenset[str]:
    path = Path(__file__).resolve().parent.parent / "data" / "redis_directives.txt"
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip()
                     and not line.startswith("#"))
