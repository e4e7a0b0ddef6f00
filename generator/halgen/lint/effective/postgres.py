"""postgresql.conf and pg_hba.conf as PostgreSQL reads them."""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass, field, replace

from halgen.formats import pgconf, pghba
from halgen.formats.base import Setting
from halgen.lint.effective.paths import Unseen, is_glob, matches, on_node, split, unseen_ok
from halgen.lint.repo import Repo


@dataclass
class PgConfig:
    settings: dict[str, Setting] = field(default_factory=dict)  # the value in effect, with its file
    files: list[str] = field(default_factory=list)  # every file read, the main one first
    unseen: list[Unseen] = field(default_factory=list)
    shadowing: list[Setting] = field(default_factory=list)  # lines that override one in another file
    hba: str | None = None  # the repo file hba_file names (None: unseen)
    ident: str | None = None


@functools.cache
def pg(repo: Repo, rel: str) -> PgConfig:
    """postgresql.conf with its include, include_if_exists and include_dir followed
    where they stand (a later line wins, as PostgreSQL reads them), then what ALTER
    SYSTEM writes over it (the data directory's postgresql.auto.conf, and ALTER SYSTEM
    statements in the node's SQL and scripts), and the hba and ident files it names
    (relative paths from the data directory; unset: beside postgresql.conf)."""
    node, path = split(rel)
    config = PgConfig()
    _pg_read(repo, node, rel, config, ())
    conf_dir = posixpath.dirname(path)
    data = config.settings.get("data_directory")
    data_dir = data.value if data else conf_dir
    for auto in matches(repo, node, posixpath.join(data_dir, "postgresql.auto.conf")):
        _pg_read(repo, node, auto, config, ())
    config.settings.update((altered.name, altered) for altered in _altered(repo, node))
    for name, default in (("hba_file", "pg_hba.conf"), ("ident_file", "pg_ident.conf")):
        named = config.settings.get(name)
        target = on_node(named.value, data_dir) if named else posixpath.join(conf_dir, default)
        found = matches(repo, node, target) if not is_glob(target) else []
        if found:
            setattr(config, name.removesuffix("_file"), found[0])
        elif named is not None and not unseen_ok(target):
            config.unseen.append(Unseen(named.file, named.line, name, target))
    return config


def _pg_read(repo: Repo, node: str, rel: str, config: PgConfig, chain: tuple[str, ...]) -> None:
    config.files.append(rel)
    here = posixpath.dirname(split(rel)[1])
    for entry in pgconf.entries(repo.text(rel))[0]:
        if entry.name not in pgconf.INCLUDES:
            earlier = config.settings.get(entry.name)
            if earlier is not None and earlier.file != rel:  # one file's repeats: HAL104 reads each file
                config.shadowing.append(replace(entry, file=rel))
            config.settings[entry.name] = replace(entry, file=rel)
            continue
        target = on_node(entry.value, here)
        if entry.name == "include_dir":
            found = [f for f in repo.node_files(node, re.escape(target.lstrip("/")) + r"/[^/]+")
                     if f.endswith(".conf") and not f.rsplit("/", 1)[1].startswith(".")]
        else:
            found = matches(repo, node, target)
        if not found and not unseen_ok(target):
            config.unseen.append(Unseen(rel, entry.line, entry.name, target))
        for included in sorted(found):
            if included not in (*chain, rel):  # PostgreSQL refuses a loop; lint just stops
                _pg_read(repo, node, included, config, (*chain, rel))


_ALTER_SYSTEM = re.compile(r"\bALTER\s+SYSTEM\s+SET\s+([A-Za-z_][\w.]*)\s*(?:=|\bTO\b)\s*('(?:[^']|'')*'|[^\s;]+)",
                           re.I)


def _altered(repo: Repo, node: str) -> list[Setting]:
    """ALTER SYSTEM SET statements in the node's SQL files and scripts, as settings."""
    found = []
    for rel in repo.node_files(node, r".+\.sql|usr/local/sbin/[^/]+"):
        text = repo.text(rel)
        if "alter system" not in text.lower():
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for match in _ALTER_SYSTEM.finditer(line):
                value = match.group(2)
                value = value[1:-1].replace("''", "'") if value.startswith("'") else value
                found.append(Setting(match.group(1).lower(), value, number, rel))
    return found


@functools.cache
def hba_entries(repo: Repo, rel: str) -> tuple[list[pghba.HbaEntry], list[Unseen]]:
    """A pg_hba.conf's entries with those of the files it includes (PostgreSQL 16+)."""
    entries: list[pghba.HbaEntry] = []
    unseen: list[Unseen] = []
    _hba_read(repo, rel, entries, unseen, ())
    return entries, unseen


def _hba_read(repo: Repo, rel: str, entries: list[pghba.HbaEntry], unseen: list[Unseen],
              chain: tuple[str, ...]) -> None:
    node, path = split(rel)
    entries.extend(replace(e, file=rel) for e in repo.hba(rel)[0])
    for line, directive, name in pghba.includes(repo.text(rel)):
        target = on_node(name, posixpath.dirname(path))
        found = (repo.node_files(node, re.escape(target.lstrip("/")) + r"/[^/]+\.conf") if directive == "include_dir"
                 else matches(repo, node, target))
        if not found and not unseen_ok(target):
            unseen.append(Unseen(rel, line, directive, target))
        for included in sorted(found):
            if included not in (*chain, rel):
                _hba_read(repo, included, entries, unseen, (*chain, rel))


@functools.cache
def hba_files(repo: Repo) -> list[str]:
    """Every pg_hba.conf found by its name, and every file a postgresql.conf's hba_file names."""
    named = {c.hba for c in (pg(repo, rel) for rel in repo.pg_confs()) if c.hba}
    return sorted(set(repo.hba_files()) | named)
