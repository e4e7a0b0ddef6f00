"""Nothing is open, weak or leaked."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from halgen.compiler.model import covers_internet
from halgen.errors import HalgenError, Problem
from halgen.formats import nginx, ufw
from halgen.formats.redisconf import Directive
from halgen.lint import effective
from halgen.lint.registry import rule
from halgen.lint.repo import Repo, node_of

WEB_PORTS = {80, 443}
# Addresses a VPC or the node itself uses (RFC 1918, loopback, IPv6 ULA); Python's
# is_private also counts documentation ranges, which are not on any VPC.
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                               "fc00::/7", "::1/128")]


def _nginx(repo: Repo) -> Iterator[tuple[str, nginx.Directive]]:
    """Every directive of every nginx.conf and the files it includes, with the file it is in."""
    for rel in repo.nginx_confs():
        for directive in effective.nginx_directives(repo, rel):
            yield directive.file or rel, directive


# Variables whose value comes from the request as the client sent it.
_CLIENT_VARIABLE = re.compile(r"\$(?:\{)?(http_\w+|arg_\w+|cookie_\w+|request\w*|uri|document_uri|args|query_string"
                              r"|is_args|ssl_server_name|remote_user|binary_remote_addr|realip_remote_addr)")


def _client_chosen(value: str, tainted: set[str]) -> bool:
    return bool(_CLIENT_VARIABLE.search(value)) or any(m.group(1) in tainted
                                                       for m in re.finditer(r"\$\{?(\w+)", value))


def _tainted_variables(directives: tuple[nginx.Directive, ...]) -> set[str]:
    """Variables a `set` or `map` fills from client input (their names without '$')."""
    tainted: set[str] = set()
    for _ in range(3):  # a variable set from a tainted one, a few levels deep
        for d in directives:
            if d.name == "set" and len(d.args) == 2 and _client_chosen(d.args[1], tainted):
                tainted.add(d.args[0].lstrip("$"))
            elif d.name == "map" and len(d.args) == 2 and _client_chosen(d.args[0], tainted):
                tainted.add(d.args[1].lstrip("$"))
    return tainted


@rule("HAL301", "nginx-host-spoofing", "error", "security")
def nginx_host_spoofing(repo: Repo) -> Iterator[Problem]:
    """nginx passes the Host it matched ($host), never one taken from a client header.

    Not $http_host, $http_x_forwarded_host - no $http_*, $arg_* or $cookie_*
    variable, directly or through a set/map variable filled from one. A client
    header is whatever the client sent, including hosts this server does not
    serve: the app then builds links, redirects and password-reset mails for
    an attacker's domain. Use `proxy_set_header Host $host;`. Checked in
    nginx.conf and in every file it includes.
    """
    for rel in repo.nginx_confs():
        directives = effective.nginx_directives(repo, rel)
        tainted = _tainted_variables(directives)
        for d in directives:
            header = d.args[0].lower() if d.name == "proxy_set_header" and len(d.args) >= 2 else ""
            if header in {"host", "x-forwarded-host"} and _client_chosen(d.args[1], tainted):
                yield Problem(d.file or rel, d.line, f"proxy_set_header {d.args[0]} {d.args[1]}: the client "
                              "chooses this value; use $host")


@rule("HAL302", "nginx-add-header-redefinition", "warning", "security")
def nginx_add_header_redefinition(repo: Repo) -> Iterator[Problem]:
    """An add_header in a nested block does not silently drop the headers of the blocks around it.

    nginx inherits add_header only into blocks that have none of their own: one
    add_header in a location drops the server's HSTS and other security headers
    there. Repeat the outer headers in the block, or move them all to one level.
    """
    for rel, d in _nginx(repo):
        added = d.child("add_header") if d.block is not None else None
        if added is None:
            continue
        inner = {h.args[0].lower() for h in d.children() if h.name == "add_header" and h.args}
        outer = {h.args[0] for p in d.parents for h in p.children() if h.name == "add_header" and h.args}
        dropped = sorted(name for name in outer if name.lower() not in inner)
        if dropped:
            yield Problem(added.file or rel, added.line,
                          f"add_header in {d.name} drops the outer block's headers here: {', '.join(dropped)}")


@rule("HAL303", "nginx-alias-traversal", "error", "security")
def nginx_alias_traversal(repo: Repo) -> Iterator[Problem]:
    """A location using alias ends its path with '/' when the alias does.

    `location /static { alias /srv/app/public/; }` serves /static../secret as
    /srv/app/public/../secret: the classic off-by-slash path traversal. End
    both with '/', or use root instead of alias.
    """
    for rel, d in _nginx(repo):
        if d.name != "alias" or not d.args or d.context != "location":
            continue
        location = d.parents[-1]
        if not location.args or location.args[0] in {"~", "~*"}:
            continue
        path = location.args[-1]
        if d.args[0].endswith("/") and not path.endswith("/"):
            yield Problem(rel, d.line, f"location {path} (no trailing '/') with alias {d.args[0]}: path traversal")


@rule("HAL304", "nginx-proxy-pass-variable", "error", "security")
def nginx_proxy_pass_variable(repo: Repo) -> Iterator[Problem]:
    """proxy_pass names a fixed upstream, never a variable.

    With a variable the destination is decided per request, often from
    client-controlled input: a server-side request forgery into the private
    network, and DNS lookups at request time. Proxy to the upstream block.
    """
    for rel, d in _nginx(repo):
        if d.name == "proxy_pass" and d.args and "$" in d.args[0]:
            yield Problem(rel, d.line, f"proxy_pass {d.args[0]} uses a variable")


@rule("HAL305", "nginx-server-tokens", "warning", "security")
def nginx_server_tokens(repo: Repo) -> Iterator[Problem]:
    """nginx does not announce its version (server_tokens off in the http block).

    The version in every error page and Server header tells a scanner which
    published vulnerabilities to try first.
    """
    for rel in repo.nginx_confs():
        tokens = effective.nginx_all(repo, rel, "server_tokens")
        for d in tokens:
            if d.args and d.args[0] != "off":
                yield Problem(d.file or rel, d.line, f"server_tokens {d.args[0]}")
        http = effective.nginx_all(repo, rel, "http")
        if http and not tokens:
            yield Problem(rel, http[0].line, "no 'server_tokens off;' in the http block")


@rule("HAL306", "pg-weak-auth", "error", "security")
def pg_weak_auth(repo: Repo) -> Iterator[Problem]:
    """PostgreSQL authenticates network clients with scram-sha-256: no trust, md5, password or ident.

    trust lets anyone who reaches the port in; password sends it in clear; md5
    hashes are replayable and were deprecated in PostgreSQL 18 (the seed used
    md5). password_encryption must be scram-sha-256 so new passwords are stored
    that way.
    """
    for rel in effective.hba_files(repo):
        entries = effective.hba_entries(repo, rel)[0]
        for entry in entries:
            weak = entry.method in {"trust", "md5", "password"} or (entry.method == "ident" and entry.type != "local")
            if weak:
                yield Problem(entry.file or rel, entry.line,
                              f"{entry.type} {entry.database} {entry.user} {entry.address}: method {entry.method}")
    for rel in repo.pg_confs():
        setting = effective.pg(repo, rel).settings.get("password_encryption")
        if setting is None or setting.value.lower() != "scram-sha-256":
            yield Problem(setting.file if setting else rel, setting.line if setting else 1,
                      f"password_encryption is {setting.value if setting else 'unset'}; want scram-sha-256")


def _private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address == "localhost"
    return any(ip in net for net in _PRIVATE if ip.version == net.version)


def _world(source: str) -> bool:
    if source in {"all", "any", "samenet"}:
        return True
    try:
        return ipaddress.ip_network(source.split()[0], strict=False).prefixlen == 0
    except ValueError:
        return False


@rule("HAL307", "pg-open-to-world", "error", "security")
def pg_open_to_world(repo: Repo) -> Iterator[Problem]:
    """pg_hba.conf names single hosts, never 'all', samenet or 0.0.0.0/0, and PostgreSQL
    listens on its private address only.

    The database should accept connections from the nodes that need it and no
    one else; a wildcard turns a leaked password into a breach from anywhere.
    """
    for rel in effective.hba_files(repo):
        for entry in effective.hba_entries(repo, rel)[0]:
            if entry.type != "local" and entry.method != "reject" and _world(entry.address):
                yield Problem(entry.file or rel, entry.line, f"{entry.database} access from {entry.address}")
    for rel in repo.pg_confs():
        listen = effective.pg(repo, rel).settings.get("listen_addresses")
        if listen is None:
            continue
        where = listen.file or rel
        for address in (a.strip() for a in listen.value.split(",")):
            if address in {"*", "0.0.0.0", "::"}:
                yield Problem(where, listen.line, f"listen_addresses = '{listen.value}' listens on every interface")
            elif address and not _private(address):
                yield Problem(where, listen.line, f"listen_addresses: {address} is not a private address")


@rule("HAL308", "firewall-open-to-world", "error", "security")
def firewall_open_to_world(repo: Repo) -> Iterator[Problem]:
    """Only load balancers open ports to the world, and only 80 and 443; incoming traffic is denied by default.

    Everything else (SSH, Starman, PostgreSQL, Redis, Sentinel) is reached from
    the admins' networks or the VPC only. Checked in both firewalls: ufw and the
    Linode Cloud Firewall. The first-boot script's ufw commands are run in order
    as ufw would (insert, delete, route, application profiles, `in on IFACE`),
    and ufw must still be enabled at the end (no later disable or reset).
    """
    stack = repo.stack
    lb_nodes = {n.name for n in stack.lbs} if stack else {d for d in repo.node_dirs if d.startswith("lb")}
    # SSH open to everyone only when the answers say so (admin_cidrs_allow_internet).
    accepted = {22} if repo.answers is not None and repo.answers.admin_cidrs_allow_internet else set()
    for rel in repo.first_boots():
        node = node_of(rel)
        state = effective.firewall(repo, rel)
        rules, defaults = state.allows, state.defaults
        enabled, enabled_line = state.enabled
        if not enabled:
            yield Problem(state.switched_in or rel, enabled_line or 1,
                          "ufw is not enabled at the end (a later disable or reset turns it off): every port is open")
        allowed = WEB_PORTS | accepted if node in lb_nodes else accepted
        for r in rules:
            if _world(r.source) and set(r.ports) - allowed:
                shown = "all" if len(r.ports) > 20 else ",".join(map(str, r.ports))
                where = f" (in on {r.interface})" if r.interface else ""
                yield Problem(r.file or rel, r.line, f"port(s) {shown} open to the world on {node}{where}")
        for port, line in _open_to_all_together([(r.source, r.ports, r.line) for r in rules if not _world(r.source)]):
            if port not in allowed:
                yield Problem(rel, line, f"port {port} on {node}: its allowed networks together are the whole Internet")
        policy, line = defaults.get("incoming", ("allow", 1))
        if policy != "deny":
            yield Problem(rel, line, f"default incoming policy is {policy}; want deny")
    for rel in repo.glob(r"firewalls/[^/]+\.json"):
        role = rel.rsplit("/", 1)[1].removesuffix(".json")
        doc = repo.cloud_firewall(rel)
        if doc is None:
            continue
        by_port: dict[int, list[str]] = {}
        for r in doc.get("inbound", []):
            if r.get("action") == "ACCEPT":
                for port in ufw.ports_of(str(r.get("ports", ""))):
                    by_port.setdefault(port, []).extend(r.get("addresses", {}).get("ipv4", []))
        for port, sources in sorted(by_port.items()):
            allowed_here = WEB_PORTS | accepted if role == "lb" else accepted
            if port not in allowed_here and not any(_world(s) for s in sources) and covers_internet(sources):
                yield Problem(rel, 1, f"port {port}: the rules that allow it together admit the whole Internet")
        for r in doc.get("inbound", []):
            if r.get("action") != "ACCEPT":
                continue
            ports = set(ufw.ports_of(str(r.get("ports", ""))))
            addresses = r.get("addresses", {})
            sources = addresses.get("ipv4", []) + addresses.get("ipv6", [])
            world = any(_world(s) for s in sources) or covers_internet(s for s in sources if ":" not in s)
            allowed = WEB_PORTS | accepted if role == "lb" else accepted
            if world and (ports - allowed or not ports):
                yield Problem(rel, 1, f"rule {r.get('label', '?')}: port(s) {r.get('ports', 'all')} open to the world")
        if doc.get("inbound_policy") != "DROP":
            yield Problem(rel, 1, f"inbound_policy is {doc.get('inbound_policy')}; want DROP")


def _open_to_all_together(rules: list[tuple[str, tuple[int, ...], int]]) -> Iterator[tuple[int, int]]:
    """(port, line of its last rule) for each port whose IPv4 sources together cover every address."""
    by_port: dict[int, list[tuple[str, int]]] = {}
    for source, ports, line in rules:
        for port in ports:
            by_port.setdefault(port, []).append((source, line))
    for port, sources in sorted(by_port.items()):
        cidrs = [s for s, _ in sources if ":" not in s and s[:1].isdigit()]
        if cidrs and covers_internet(cidrs):
            yield port, max(line for _, line in sources)


def _passwordless(user: Directive) -> bool:
    """Whether an ACL user line leaves the user enabled with nopass (Redis resets a
    configured user first: off, no password)."""
    enabled = passwordless = False
    for token in user.args[1:]:
        lowered = token.lower()
        if lowered in {"on", "off"}:
            enabled = lowered == "on"
        elif lowered == "nopass":
            passwordless = True
        elif lowered in {"resetpass", "reset"} or token[:1] in {">", "#"}:
            passwordless = False
            enabled = enabled and lowered != "reset"
    return enabled and passwordless


def _default_user_open(config: effective.RedisConfig) -> bool:
    """Whether anyone may log in as the default user: a `user default` line (tracked, or
    in a file `halgen build` writes) decides; without one, requirepass does."""
    defined = [d for d in config.all("user") if d.args[:1] == ("default",)]
    if defined:
        return _passwordless(defined[-1])
    requirepass = config.last("requirepass")
    return not (requirepass and requirepass.args and requirepass.args[0])


@rule("HAL309", "redis-no-auth", "error", "security")
def redis_no_auth(repo: Repo) -> Iterator[Problem]:
    """Redis (and Sentinel, when halgen's design gives it a password) lets no one in without
    a password, no ACL user is enabled with nopass, and Sentinel has its auth-pass.

    Without a password anyone who reaches the port can read every session and,
    with CONFIG SET, write files as the redis user. halgen keeps the passwords
    and ACL users out of git in files `halgen build` writes and the configs
    include (lint reads what build writes there): the include or aclfile must
    stay, point at that file, and no later line may undo it (`requirepass ""`,
    `user default on nopass`). Includes are followed.
    """
    sentinels = set(repo.sentinel_confs())
    sentinels_guarded = effective.designed(r"^\s*sentinel\s+sentinel-pass\b")
    for rel in repo.redis_confs() + sorted(sentinels):
        config = effective.redis(repo, rel)
        for d in (u for u in config.all("user") if _passwordless(u)):
            yield Problem(d.file or rel, d.line if d.file else 1, f"user {d.args[0]} is on with nopass: anyone may "
                          "use it")
        if rel in sentinels and not config.all("sentinel auth-pass"):
            yield Problem(rel, 1, "no sentinel auth-pass (nor an include of the secrets file `halgen build` "
                          "writes): cannot talk to the master")
        defaults = [u for u in config.all("user") if u.args[:1] == ("default",)]
        if (rel not in sentinels or sentinels_guarded) and _default_user_open(config) and not defaults:
            cleared = config.last("requirepass")  # 'requirepass ""' after the include
            yield Problem(cleared.file if cleared and cleared.file else rel, cleared.line if cleared else 1,
                          "the default user needs no password (no requirepass, no `user default` line, no include "
                          "of the secrets file `halgen build` writes): anyone may connect")
            mode = config.last("protected-mode")
            if mode and mode.args == ("no",) and rel not in sentinels:
                yield Problem(mode.file or rel, mode.line, "protected-mode no without a password")


@rule("HAL310", "redis-public-bind", "error", "security")
def redis_public_bind(repo: Repo) -> Iterator[Problem]:
    """Redis and Sentinel bind private (VPC) addresses only.

    A Redis reachable from the internet is found and abused within hours;
    without bind it listens on every interface, including the public one.
    """
    for rel in repo.redis_confs() + repo.sentinel_confs():
        bind = effective.redis(repo, rel).last("bind")
        if bind is None:
            yield Problem(rel, 1, "no bind: listens on every interface")
            continue
        for address in bind.args:
            if not _private(address.lstrip("-")):
                yield Problem(bind.file or rel, bind.line, f"bind {address}: not a private (VPC or loopback) address")


# A value, not a reference to one: '$VAR', '${VAR:?}', '"$(cat file)"' are how scripts
# read secrets at run time and are fine.
_VALUE = r"""(?!["']?\$)["']?[^\s"'$]"""
_SECRET_LINES = [
    (re.compile(rf"^\s*(requirepass|masterauth)\s+{_VALUE}"), "a Redis password"),
    (re.compile(rf"^\s*sentinel\s+auth-pass\s+\S+\s+{_VALUE}"), "a Sentinel auth-pass"),
    (re.compile(rf"^\s*sentinel\s+sentinel-pass\s+{_VALUE}"), "a Sentinel password"),
    (re.compile(rf"^\s*tls-(?:client-)?key-file-pass\s+{_VALUE}"), "a TLS key passphrase"),
    (re.compile(rf"^\s*repo\d+-(cipher-pass|s3-key|s3-key-secret)\s*=\s*{_VALUE}"), "a pgBackRest key"),
    (re.compile(rf"^\s*(export\s+)?[A-Z0-9_]*(PASSWORD|PASSWD|SECRET|SECRET_KEY|ACCESS_KEY|TOKEN)\s*=\s*{_VALUE}"),
     "a secret variable"),
    (re.compile(r"password=[^;'\"\s$]{4,}", re.I), "a password in a connection string"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^:/@\s]*:[^@\s/$]{3,}@", re.I), "a password in a URL"),
    (re.compile(r"""(?:^\s*-?\s*|["'])(password|passwd|secret|token)["']?\s*:\s*["'][^"'$\s]{4,}["']""", re.I),
     "a password field"),  # a YAML key or a JSON member, not psql's :'variable'

    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an access key ID"),
    # OpenSSH, PEM (RSA, EC, DSA, ENCRYPTED), PKCS#8, PGP, and PuTTY's own format.
    (re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), "a private key"),
    (re.compile(r"^\s*PuTTY-User-Key-File-\d+:", re.I), "a PuTTY private key"),
    # A Redis ACL user with a clear-text password ('>secret'); '#<sha256>' is a hash and fine.
    (re.compile(r"^\s*user\s+\S+\s.*(?<=[\s\"'])>[^\s\"'$]", re.I), "a Redis ACL password"),
    (re.compile(r"\bacl\s+setuser\s+\S+\s.*(?<=[\s\"'])>[^\s\"'$]", re.I), "a Redis ACL password"),
]


@rule("HAL311", "secrets-in-tracked-files", "error", "security")
def secrets_in_tracked_files(repo: Repo) -> Iterator[Problem]:
    """No password, key or token is written into a file git tracks (secrets live in the gitignored secrets/).

    Anything committed is in every clone and every backup of the repo forever.
    halgen keeps secrets in secrets/secrets.env and writes the secret-bearing
    node files to build/ (`halgen build`); rotate any secret that was committed.
    """
    known = _secret_values(repo)
    for rel in repo.files + repo.tracked_outside:
        for number, line in enumerate(repo.text(rel).splitlines(), 1):
            for pattern, what in _SECRET_LINES:
                if pattern.search(line):
                    yield Problem(rel, number, f"{what} in {rel}")
                    break
            else:
                for name, value in known:
                    if value in line:
                        yield Problem(rel, number, f"the value of {name} in {rel}")
                        break


def _secret_values(repo: Repo) -> list[tuple[str, str]]:
    """The stack's secrets (secrets/secrets.env) long enough to search for."""
    from halgen.compiler import secrets

    try:
        values = secrets.read(repo.root)
    except HalgenError:  # a malformed file: halgen build reports it
        return []
    return [(name, value) for name, value in values.items() if len(value) >= 12]


@rule("HAL312", "gitignore-secrets", "error", "security")
def gitignore_secrets(repo: Repo) -> Iterator[Problem]:
    """.gitignore keeps secrets/ and build/ out of git, and git tracks no file under them.

    secrets/secrets.env holds every generated password and build/ the files made
    from them; one `git add -A` without these lines publishes them, and a
    `git add -f` publishes them despite the lines.
    """
    lines = {line.strip() for line in repo.text(".gitignore").splitlines()}
    for directory in ("secrets", "build"):
        if not lines & {directory, f"{directory}/", f"/{directory}", f"/{directory}/"}:
            yield Problem(".gitignore", 1 if lines else 0, f"does not ignore /{directory}/")
    for rel in repo.tracked_outside:
        yield Problem(rel, 0, f"git tracks {rel} (added despite .gitignore?): `git rm --cached {rel}` and rotate "
                      "what it holds")


_SSHD_REQUIRED = {"permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no"}
_SSHD_FORBIDDEN = {"permitemptypasswords": "yes"}


@rule("HAL313", "ssh-hardening", "error", "security")
def ssh_hardening(repo: Repo) -> Iterator[Problem]:
    """Every node's sshd takes keys only (no root, no passwords) - in every Match block and
    included file too - and cloud-init does not turn passwords back on.

    Password SSH on a public address is brute-forced all day; root login skips
    the audit trail of personal accounts. sshd keeps the first value it reads
    (Include pulls files in where it stands), and a Match block overrides it for
    the connections it matches, so a `Match Address *` with
    `PasswordAuthentication yes` undoes the hardening for everyone.
    """
    for node in repo.node_dirs:
        entries, _ = effective.sshd(repo, node)
        drop_ins = repo.node_files(node, r"etc/ssh/sshd_config\.d/[^/]+\.conf")
        if not entries and not drop_ins:
            yield Problem(f"nodes/{node}", 0, f"{node} has no sshd_config.d drop-in: sshd keeps Debian's defaults")
        else:
            found: dict[str, effective.SshdEntry] = {}
            for entry in entries:
                if not entry.match:
                    effective_entry = found.setdefault(entry.key, entry)
                    want = _SSHD_REQUIRED.get(entry.key)
                    if entry is not effective_entry and want and entry.value.lower() != want:
                        yield Problem(entry.file, entry.line, f"{entry.key} {entry.value}: not in effect (sshd keeps "
                                      f"the first value, {effective_entry.file}:{effective_entry.line}), but one "
                                      "reordering away; remove it")
                elif _SSHD_REQUIRED.get(entry.key, entry.value.lower()) != entry.value.lower():
                    yield Problem(entry.file, entry.line, f"{entry.key} {entry.value} in 'Match {entry.match}'; "
                                  f"want {_SSHD_REQUIRED[entry.key]} for every connection")
                if _SSHD_FORBIDDEN.get(entry.key) == entry.value.lower():
                    yield Problem(entry.file, entry.line, f"{entry.key} {entry.value}")
            first_file = entries[0].file if entries else drop_ins[0]
            for key, want in _SSHD_REQUIRED.items():
                setting = found.get(key)
                if setting is None or setting.value.lower() != want:
                    yield Problem(setting.file if setting else first_file, setting.line if setting else 1,
                                  f"{key} is {setting.value.lower() if setting else 'unset'}; want {want}")
        cloud = repo.one(node, r"cloud-init\.yaml")
        if cloud:
            data, error = repo.yaml(cloud)
            if error:
                continue  # HAL102 reports it
            for key, required in (("ssh_pwauth", False), ("disable_root", True)):
                found_value = data.get(key, "unset") if isinstance(data, dict) else "unset"
                if found_value is not required:
                    yield Problem(cloud, repo.line_of(cloud, rf"^{key}:"),
                              f"{key} is {found_value}; want {str(required).lower()}")
