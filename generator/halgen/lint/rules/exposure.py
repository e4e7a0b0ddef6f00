"""Nothing is hidden from lint, handed out to a service, or listed to strangers."""

from __future__ import annotations

import re
from collections.abc import Iterator

from halgen.errors import Problem
from halgen.formats import haproxy
from halgen.lint import effective, facts
from halgen.lint.registry import rule
from halgen.lint.repo import Repo, node_of


@rule("HAL320", "config-include-unseen", "error", "security")
def config_include_unseen(repo: Repo) -> Iterator[Problem]:
    """Every file a service config includes is in the node's tree, where lint checks it.

    Followed: PostgreSQL include, include_if_exists, include_dir, hba_file and
    ident_file (and pg_hba.conf's includes), nginx and Redis include (globs
    too), Redis aclfile, sshd Include. A setting moved into a file outside the repo - /tmp, /srv, another
    directory on the node - is one no review or lint ever sees: a
    `listen_addresses = '*'` or a `trust` line there takes effect unchecked.
    Put the file under nodes/<node>/ at the path the config names. The
    secrets files `halgen build` writes, and files Debian's packages install
    (/etc/nginx/mime.types, say), are fine.
    """
    found: list[effective.Unseen] = []
    for rel in repo.pg_confs():
        found += effective.pg(repo, rel).unseen
    for rel in effective.hba_files(repo):
        found += effective.hba_entries(repo, rel)[1]
    for rel in repo.redis_confs() + repo.sentinel_confs():
        found += effective.redis(repo, rel).unseen
    for rel in repo.nginx_confs():
        found += effective.nginx_unseen(repo, rel)
    for node in repo.node_dirs:
        found += effective.sshd(repo, node)[1]
    for unseen in found:
        yield Problem(unseen.file, unseen.line, f"{unseen.directive} {unseen.target}: not in nodes/"
                      f"{node_of(unseen.file)}/, so lint cannot check what the service reads there")


# Users Debian's packages run services as, beside the User= of the repo's units.
_PACKAGE_USERS = {"postgres", "redis", "www-data", "nobody", "daemon", "_apt", "sshd"}
_ROOT_GROUPS = {"sudo", "root", "wheel", "admin"}
_SUDOERS_LINE = re.compile(r"(?:^|[\s\"'])(?P<who>%?[A-Za-z_][\w.-]*)\s+(?P<hosts>[\w.,!-]+)\s*=\s*"
                           r"(?P<runas>\([^)]*\))?\s*(?:[A-Z_]+:\s*)*(?P<commands>[^\"'\n]+)")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+|readonly\s+)?([A-Za-z_]\w*)=[\"']?([\w.-]+)[\"']?\s*$", re.M)
_USER_ALIAS = re.compile(r"^\s*User_Alias\s+(?P<alias>[A-Z][A-Z0-9_]*)\s*=\s*(?P<members>[^\n#]+)", re.M)
_SYSTEM_USER = re.compile(r"\b(?:useradd|adduser)\b[^\n]*--system\b[^\n]*?[\s,'\"](?P<user>[a-z_][\w-]*)['\"\]]*\s*$")
_GROUP_GRANT = [
    re.compile(r"\busermod\b.*\s-a?G\s*(?P<groups>\S+)\s+(?P<user>\S+)"),
    re.compile(r"\busermod\b.*\s--groups[= ](?P<groups>\S+)\s+(?P<user>\S+)"),
    re.compile(r"\b(?:adduser|addgroup)\s+(?P<user>[a-z_][\w-]*)\s+(?P<groups>[a-z_][\w-]*)\s*$"),
    re.compile(r"\bgpasswd\s+-a\s+(?P<user>\S+)\s+(?P<groups>\S+)"),
]


def _service_users(repo: Repo) -> set[str]:
    """Every account a service runs as: the units' User= and Group=, and the system users
    the scripts and cloud-init create."""
    users = set(_PACKAGE_USERS)
    for rel in repo.units():
        users |= {e.value for e in repo.unit(rel)[0] if e.key in {"User", "Group"} and e.value}
    for rel in repo.cloud_inits() + repo.scripts():
        for line in repo.text(rel).splitlines():
            if "--system" in line and (match := _SYSTEM_USER.search(re.sub(r"[\[\],]", " ", line))):
                users.add(match.group("user"))
    return users


def _sudo_sources(repo: Repo) -> list[str]:
    """The files that can grant sudo: sudoers files in node trees, scripts and cloud-init."""
    sudoers = [f for node in repo.node_dirs for f in repo.node_files(node, r"etc/sudoers(?:\.d/[^/]+)?")]
    return sorted(set(sudoers + repo.scripts() + repo.cloud_inits()))


def _runs_as_root(runas: str | None) -> bool:
    if not runas:
        return True  # sudo's default target user is root
    users = runas.strip("()").split(":", 1)[0]
    return any(u.strip() in {"ALL", "root", "#0"} for u in users.split(","))


@rule("HAL321", "sudo-for-service-users", "error", "security")
def sudo_for_service_users(repo: Repo) -> Iterator[Problem]:
    """No service account (the app user, postgres, redis, www-data...) can run anything as root through sudo.

    Checked: sudoers lines (and User_Alias) for the account or its group in a
    node's etc/sudoers(.d/), in scripts and in cloud-init; the sudo, wheel,
    admin or root group given to it (usermod, adduser, gpasswd, cloud-init
    users). The app runs the code that faces the Internet: one remote-code bug in it is
    root on the node when its user may sudo, and from there every secret the
    node holds. Admin access belongs to personal accounts (cloud-init's ops).
    """
    services = _service_users(repo)
    for rel in _sudo_sources(repo):  # a User_Alias naming a service user is one too
        for alias in _USER_ALIAS.finditer(repo.text(rel)):
            if {m.strip() for m in alias.group("members").split(",")} & services:
                services.add(alias.group("alias"))
    cloud_inits = set(repo.cloud_inits())
    for rel in _sudo_sources(repo):
        text = repo.text(rel)
        variables = dict(_ASSIGNMENT.findall(text))  # APP_USER=perlapp ... "$APP_USER ALL=(ALL) ALL"
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#") and "sudoers" in rel:
                continue
            yield from _sudo_grants(rel, number, _expand(line, variables), services)
        if rel in cloud_inits:
            yield from _cloud_init_grants(repo, rel, services)


def _expand(line: str, variables: dict[str, str]) -> str:
    """$NAME and ${NAME} replaced by the value the file assigns them, where it does."""
    if "$" not in line or not variables:
        return line
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), line)


def _sudo_grants(rel: str, number: int, line: str, services: set[str]) -> Iterator[Problem]:
    if ("=" in line and "ALL" in line) or "sudoers" in rel:
        for match in _SUDOERS_LINE.finditer(line):
            who = match.group("who")
            if who.lstrip("%") in services and _runs_as_root(match.group("runas")):
                yield Problem(rel, number, f"sudo lets {who} run {match.group('commands').strip()} as root")
    if not any(tool in line for tool in ("usermod", "adduser", "addgroup", "gpasswd")):
        return
    for pattern in _GROUP_GRANT:
        if (grant := pattern.search(line)) and grant.group("user").strip("'\"") in services:
            groups = set(grant.group("groups").strip("'\"").split(","))
            if groups & _ROOT_GROUPS:
                yield Problem(rel, number, f"adds {grant.group('user')} to {', '.join(sorted(groups & _ROOT_GROUPS))}")


def _cloud_init_grants(repo: Repo, rel: str, services: set[str]) -> Iterator[Problem]:
    data, error = repo.yaml(rel)
    users = data.get("users") if isinstance(data, dict) and not error else None
    for user in users if isinstance(users, list) else []:
        if not isinstance(user, dict) or str(user.get("name")) not in services:
            continue
        groups = user.get("groups") or []
        groups = set(groups.split(",") if isinstance(groups, str) else map(str, groups))
        if user.get("sudo") or groups & _ROOT_GROUPS:
            yield Problem(rel, repo.line_of(rel, rf"name:\s*{re.escape(str(user['name']))}\b"),
                          f"cloud-init gives service user {user['name']} sudo")


@rule("HAL322", "nginx-autoindex", "error", "security")
def nginx_autoindex(repo: Repo) -> Iterator[Problem]:
    """nginx lists no directory (no `autoindex on`, in nginx.conf or a file it includes).

    A directory listing hands out every file under it - backups, dumps, keys
    left beside the static files - to anyone who asks for the directory.
    Serve the files that are meant to be public, by name.
    """
    for rel in repo.nginx_confs():
        for d in effective.nginx_all(repo, rel, "autoindex"):
            if d.args and d.args[0].lower() == "on":
                yield Problem(d.file or rel, d.line, "autoindex on: lists the directory to anyone")


@rule("HAL323", "balancer-on-loopback", "error", "security")
def balancer_on_loopback(repo: Repo) -> Iterator[Problem]:
    """HAProxy on a load balancer listens on a loopback address only.

    nginx on the same node is its one client: it is where TLS, the request
    limits, the security headers and the 444 for unknown names happen. A
    HAProxy frontend on the node's VPC or public address lets anyone who
    reaches it walk around all of that to the app servers (only ufw would
    stand in the way). Bind it to 127.0.0.1:PORT, the address nginx's
    upstream names.
    """
    for rel in repo.haproxy_confs():
        for section in haproxy.of_kind(repo.haproxy(rel)[0], "frontend", "listen"):
            for bind in section.all("bind"):
                address = bind.args[0].rpartition(":")[0] if bind.args else ""
                if not facts.is_loopback(address):
                    yield Problem(rel, bind.line, f"HAProxy listens on {bind.args[0] if bind.args else '(nothing)'}, "
                                              "not a loopback address: clients could bypass nginx")
