"""The configuration each service really runs with: includes followed inside the node's
tree, and the value the service uses when a name is set twice (the last one for
PostgreSQL, Redis and nginx; the first for sshd).

A node's files sit under nodes/<node>/ as they will on the node, so an include of
/etc/x names nodes/<node>/etc/x. An include lint cannot follow - outside the node's
tree, or a file that does not exist - is recorded as `Unseen` (HAL320 reports it),
except the secret-bearing files `halgen build` writes and a few files Debian's
packages install."""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass, field, replace

from halgen.formats import nginx, pgconf, pghba, redisconf, ufw
from halgen.formats.base import Setting
from halgen.lint.repo import Repo

# Files Debian's packages install that a config may include without lint seeing them.
PACKAGE_FILES = frozenset({
    "/etc/nginx/mime.types", "/etc/nginx/fastcgi_params", "/etc/nginx/fastcgi.conf", "/etc/nginx/proxy_params",
    "/etc/nginx/scgi_params", "/etc/nginx/uwsgi_params", "/etc/nginx/koi-utf", "/etc/nginx/koi-win",
    "/etc/nginx/win-utf", "/etc/nginx/snippets/fastcgi-php.conf", "/etc/nginx/snippets/snakeoil.conf",
    "/etc/letsencrypt/options-ssl-nginx.conf",
})


@dataclass(frozen=True)
class Unseen:
    """An include (or hba_file, aclfile...) naming a file lint cannot read."""

    file: str
    line: int
    directive: str
    target: str  # the path on the node


# --- paths ----------------------------------------------------------------------------


def split(rel: str) -> tuple[str, str]:
    """'nodes/db1/etc/x.conf' -> ('db1', '/etc/x.conf')."""
    _, node, rest = rel.split("/", 2)
    return node, "/" + rest


def on_node(path: str, base: str) -> str:
    """A path as the service resolves it: absolute, or relative to base."""
    return posixpath.normpath(posixpath.join(base, path))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell glob (as glob(3): '*' stays within one directory) as a regular expression."""
    parts = []
    for token in re.split(r"(\*|\?|\[[^]]*\])", pattern):
        if token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        elif token.startswith("[") and token.endswith("]") and len(token) > 2:
            parts.append("[" + token[1:-1].replace("!", "^", 1) + "]" if token[1] == "!" else token)
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def matches(repo: Repo, node: str, path: str) -> list[str]:
    """The node's repo files a path (maybe a glob) names, sorted as glob(3) sorts them."""
    if not is_glob(path):
        rel = f"nodes/{node}{path}"
        return [rel] if repo.exists(rel) else []
    compiled = _glob_regex(f"nodes/{node}{path}")
    return sorted(f for f in repo.node_files(node, ".*") if compiled.fullmatch(f))


@functools.cache
def _build_written() -> tuple[tuple[re.Pattern[str], str], ...]:
    """The node paths of the secret-bearing files `halgen build` writes (from the secrets
    blueprint: blueprints/secrets/nodes/<role>/<path>.jinja, names templated), each with
    its template's text, every {{ value }} replaced by a stand-in word."""
    from halgen.compiler import resources

    try:
        root = resources.template_root() / "blueprints" / "secrets" / "nodes"
    except FileNotFoundError:
        return ()
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(root).parts[1:]  # below the role directory
        regex = "/" + "/".join(".+" if "{" in p else re.escape(p.removesuffix(".jinja")) for p in parts)
        text = re.sub(r"\{\{.*?\}\}", "templated", path.read_text(encoding="utf-8", errors="replace"))
        found.append((re.compile(regex), re.sub(r"\{[%#].*?[%#]\}", "", text, flags=re.S)))
    return tuple(found)


def build_written(path: str) -> bool:
    """Whether `halgen build` writes this node path (a secrets file, never in git)."""
    return build_template(path) is not None


def build_template(path: str) -> str | None:
    """What `halgen build` writes to this node path, values left out; None if it writes nothing there."""
    return next((text for regex, text in _build_written() if regex.fullmatch(path)), None)


def designed(pattern: str) -> bool:
    """Whether any file `halgen build` writes has a line matching pattern: what this halgen's
    design puts in the secrets files (Sentinel passwords, say)."""
    compiled = re.compile(pattern, re.M)
    return any(compiled.search(text) for _, text in _build_written())


def _unseen_ok(path: str) -> bool:
    return build_written(path) or path in PACKAGE_FILES


# Directories Debian's packages create empty, for the admin's own files.
EMPTY_PACKAGE_DIRS = frozenset({"/etc/nginx/conf.d", "/etc/ssh/sshd_config.d"})


def _empty_glob_ok(repo: Repo, node: str, pattern: str) -> bool:
    """A glob that matches nothing is fine in a directory the tree holds or Debian leaves
    empty; anywhere else it picks up whatever the node has there, unseen."""
    if not is_glob(pattern):
        return False
    directory = posixpath.dirname(pattern)
    if is_glob(directory):
        return False
    return directory in EMPTY_PACKAGE_DIRS or bool(repo.node_files(node, re.escape(directory.lstrip("/")) + "/.+"))


# --- PostgreSQL -------------------------------------------------------------------------


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
        elif named is not None and not _unseen_ok(target):
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
        if not found and not _unseen_ok(target):
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
        if not found and not _unseen_ok(target):
            unseen.append(Unseen(rel, line, directive, target))
        for included in sorted(found):
            if included not in (*chain, rel):
                _hba_read(repo, included, entries, unseen, (*chain, rel))


@functools.cache
def hba_files(repo: Repo) -> list[str]:
    """Every pg_hba.conf found by its name, and every file a postgresql.conf's hba_file names."""
    named = {c.hba for c in (pg(repo, rel) for rel in repo.pg_confs()) if c.hba}
    return sorted(set(repo.hba_files()) | named)


# --- Redis and Sentinel -------------------------------------------------------------------


@dataclass
class RedisConfig:
    # In the order Redis applies them; those of a file `halgen build` writes have no file.
    directives: list[redisconf.Directive] = field(default_factory=list)
    secret_includes: list[redisconf.Directive] = field(default_factory=list)  # of files `halgen build` writes
    unseen: list[Unseen] = field(default_factory=list)

    def last(self, name: str) -> redisconf.Directive | None:
        return redisconf.last(self.directives, name)

    def all(self, name: str) -> list[redisconf.Directive]:
        return [d for d in self.directives if d.name == name]


@functools.cache
def redis(repo: Repo, rel: str) -> RedisConfig:
    """redis.conf or sentinel.conf with its includes (globs too) and aclfile read in place."""
    config = RedisConfig()
    _redis_read(repo, rel, config, ())
    return config


def _redis_read(repo: Repo, rel: str, config: RedisConfig, chain: tuple[str, ...]) -> None:
    node, path = split(rel)
    for directive in repo.redis(rel)[0]:
        directive = replace(directive, file=rel)
        config.directives.append(directive)
        if directive.name not in {"include", "aclfile"} or not directive.args:
            continue
        target = on_node(directive.args[0], posixpath.dirname(path))
        found = matches(repo, node, target)
        template = build_template(target)
        if template is not None:  # read in place: what halgen build writes there, values left out
            config.secret_includes.append(directive)
            config.directives.extend(replace(d, file="") for d in redisconf.parse(template)[0])
        elif not found and not (directive.name == "include" and _empty_glob_ok(repo, node, target)):
            config.unseen.append(Unseen(rel, directive.line, directive.name, target))
        for included in found:
            if included not in (*chain, rel):
                _redis_read(repo, included, config, (*chain, rel))


# --- nginx -----------------------------------------------------------------------------------


def _nginx_targets(repo: Repo, directive: nginx.Directive) -> tuple[str, list[str]]:
    node, _ = split(directive.file)
    target = on_node(directive.args[0], "/etc/nginx") if directive.args else ""
    return target, matches(repo, node, target) if target else []


@functools.cache
def _nginx_payload(repo: Repo, rel: str) -> dict:
    return nginx.parse(repo.root / rel, included=True)


def _nginx_included(repo: Repo, rel: str) -> list[dict]:
    configs = _nginx_payload(repo, rel).get("config") or [{}]
    return list(configs[0].get("parsed", []))


def nginx_included_errors(repo: Repo, rel: str) -> list[tuple[str, int, str]]:
    """(file, line, message) of what crossplane refuses in the files an nginx.conf includes."""
    included = sorted({f for d in nginx_all(repo, rel, "include") for f in _nginx_targets(repo, d)[1]})
    return [(f, err.get("line") or 1, err["error"].replace(str(repo.root / f), f))
            for f in included for config in _nginx_payload(repo, f).get("config", [])
            for err in config.get("errors", [])]


@functools.cache
def nginx_directives(repo: Repo, rel: str) -> tuple[nginx.Directive, ...]:
    """Every directive of an nginx.conf and of the files its includes name (globs
    too, in glob order), each with its file, depth first."""

    def includer(directive: nginx.Directive) -> list[tuple[str, list[dict]]]:
        return [(f, _nginx_included(repo, f)) for f in _nginx_targets(repo, directive)[1]]

    return tuple(nginx.walk(repo.nginx(rel), rel, includer))


def nginx_unseen(repo: Repo, rel: str) -> list[Unseen]:
    found = []
    for d in nginx_directives(repo, rel):
        if d.name == "include":
            target, files = _nginx_targets(repo, d)
            if not files and not _unseen_ok(target) and not _empty_glob_ok(repo, split(d.file)[0], target):
                found.append(Unseen(d.file, d.line, "include", target))
    return found


# --- sshd ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshdEntry:
    key: str  # lower-case
    value: str
    file: str
    line: int
    match: str  # '' outside a Match block, else its criteria


_SSHD_ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
SSHD_DROP_INS = "/etc/ssh/sshd_config.d/*.conf"  # what Debian's sshd_config includes first


@functools.cache
def sshd(repo: Repo, node: str) -> tuple[list[SshdEntry], list[Unseen]]:
    """The node's sshd settings in the order sshd reads them: its sshd_config if the
    tree has one, else Debian's (which includes the drop-ins first), Include followed
    (relative to /etc/ssh, globs sorted), each entry with the Match block it is in."""
    entries: list[SshdEntry] = []
    unseen: list[Unseen] = []
    main = f"nodes/{node}/etc/ssh/sshd_config"
    if repo.exists(main):
        _sshd_read(repo, node, main, "", entries, unseen, ())
    else:
        for rel in matches(repo, node, SSHD_DROP_INS):
            _sshd_read(repo, node, rel, "", entries, unseen, ())
    return entries, unseen


def _sshd_read(repo: Repo, node: str, rel: str, match: str, entries: list[SshdEntry], unseen: list[Unseen],
               chain: tuple[str, ...]) -> None:
    for number, raw in enumerate(repo.text(rel).splitlines(), 1):
        words = re.split(r"\s*=\s*|\s+", raw.split("#", 1)[0].strip(), maxsplit=1)
        if len(words) != 2:
            continue
        key, value = words[0].lower(), words[1].strip().strip('"')
        if key == "match":
            match = "" if value.lower() == "all" else value
        elif key == "include":
            for pattern in value.split():
                target = on_node(pattern, "/etc/ssh")
                found = matches(repo, node, target)
                if not found and not _empty_glob_ok(repo, node, target):
                    unseen.append(Unseen(rel, number, "Include", target))
                for included in found:
                    if included not in (*chain, rel):
                        _sshd_read(repo, node, included, match, entries, unseen, (*chain, rel))
        else:
            entries.append(SshdEntry(_SSHD_ALIASES.get(key, key), value, rel, number, match))


def nginx_all(repo: Repo, rel: str, name: str) -> list[nginx.Directive]:
    return [d for d in nginx_directives(repo, rel) if d.name == name]


# --- ufw -------------------------------------------------------------------------------------


def _runcmd(text: str) -> str:
    """A cloud-init file's text less its package list (which names ufw on every node)."""
    return re.sub(r"^packages:.*$", "", text, flags=re.M)


def _runcmd_lines(text: str) -> tuple[str, str]:
    """A cloud-init file's lines as shell, YAML list syntax dropped ('- [ufw, disable]' ->
    'ufw disable'), split where it calls the first-boot script: (before, after)."""
    shell = [re.sub(r"^\s*-\s*\[?|[\]\"']|,(?=\s)", "", line).strip() for line in text.splitlines()]
    at = next((i for i, line in enumerate(shell) if re.search(r"-first-boot\b", line)), len(shell))
    blank = [""] * len(shell)  # keeps line numbers
    return "\n".join(shell[:at] + blank[at:]), "\n".join(blank[:at] + shell[at:])


@functools.cache
def firewall(repo: Repo, boot: str) -> ufw.Firewall:
    """The node's ufw at the end: cloud-init's commands before the first-boot script, the
    script, cloud-init's after it, then any other script of the node that runs ufw."""
    node = split(boot)[0]
    cloud = repo.one(node, r"cloud-init\.yaml")
    before, after = _runcmd_lines(repo.text(cloud)) if cloud and "ufw" in _runcmd(repo.text(cloud)) else ("", "")
    state = ufw.firewall(before, file=cloud or "")
    state = ufw.firewall(repo.text(boot), state, boot)
    state = ufw.firewall(after, state, cloud or "")
    for rel in repo.node_files(node, r"usr/local/sbin/[^/]+|etc/cron\.d/[^/]+"):
        if rel != boot and "ufw" in repo.text(rel):
            state = ufw.firewall(repo.text(rel), state, rel)
    return state
