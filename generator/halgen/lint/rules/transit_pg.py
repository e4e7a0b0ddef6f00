"""PostgreSQL traffic inside the VPC is encrypted and the server is verified (answer vpc_tls)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from halgen.errors import Problem
from halgen.lint import effective, facts
from halgen.lint.registry import rule
from halgen.lint.repo import Repo

_TRUE = ("on", "true", "yes", "1")
_STRONG_TLS = {"tlsv1.2", "tlsv1.3"}

# libpq's connection keywords: a run of them (key=value, space-separated) is a
# keyword/value connection string; one alone (`grep "host=$X"`) is not.
_KEYWORDS = ("host|hostaddr|port|dbname|user|password|passfile|channel_binding|connect_timeout|client_encoding"
             "|options|application_name|fallback_application_name|keepalives(?:_idle|_interval|_count)?"
             "|tcp_user_timeout|replication|gssencmode|sslmode|requiressl|sslcompression|sslcert|sslkey|sslpassword"
             "|sslcertmode|sslrootcert|sslcrl|sslcrldir|sslsni|sslnegotiation|requirepeer|ssl_min_protocol_version"
             "|ssl_max_protocol_version|krbsrvname|gsslib|gssdelegation|service|target_session_attrs"
             "|load_balance_hosts|require_auth")
# A value: quoted, or a word that may hold a shell $(...) (pg-failover.sh builds hosts so).
_PAIR = rf"(?<![\w.-])(?:{_KEYWORDS})=(?:'(?:[^'\\]|\\.)*'|(?:\$\([^()]*\)|[^\s'\"])*)"
_KEYWORD_RUN = re.compile(rf"{_PAIR}(?:[ \t]+{_PAIR})+")
_PAIR_PARTS = re.compile(rf"(?<![\w.-])({_KEYWORDS})=('(?:[^'\\]|\\.)*'|(?:\$\([^()]*\)|[^\s'\"])*)")
_DBI = re.compile(r"dbi:Pg:[^\s'\"]*", re.I)
_URI = re.compile(r"postgres(?:ql)?://[^\s'\"]*")
_ANY = re.compile(r"dbi:Pg:|postgres(?:ql)?://|(?<![\w.-])host(?:addr)?=", re.I)


@dataclass(frozen=True)
class ConnString:
    """A libpq connection string found in a file: its keywords (the last value wins, as in libpq)."""

    line: int
    fields: dict[str, str]

    @property
    def hosts(self) -> list[str]:
        return [h for h in (self.fields.get("host") or self.fields.get("hostaddr", "")).split(",") if h]

    @property
    def over_network(self) -> bool:
        """Whether it reaches a server over TCP: no host at all, or only socket directories, is local."""
        return any(not h.startswith(("/", "@")) for h in self.hosts) or bool(self.fields.get("hostaddr"))


def conn_strings(text: str, sql: bool = False) -> Iterator[ConnString]:
    """Every connection string in a file: DBI DSNs (dbi:Pg:k=v;k=v), URIs (postgresql://)
    and keyword/value strings (k=v k=v: pg_basebackup -d, primary_conninfo). Comment
    lines ('#', and '--' in SQL) are skipped: nothing reads them."""
    if not _ANY.search(text):
        return
    comments = ("#", "--") if sql else ("#",)
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(comments) or not _ANY.search(line):
            continue
        for match in _DBI.finditer(line):
            yield ConnString(number, _fields(part for part in match.group()[len("dbi:Pg:"):].split(";")))
        for match in _URI.finditer(line):
            yield ConnString(number, _uri_fields(match.group()))
        rest = _URI.sub(" ", _DBI.sub(" ", line))
        for match in _KEYWORD_RUN.finditer(rest):
            yield ConnString(number, {m.group(1): m.group(2).strip("'") for m in _PAIR_PARTS.finditer(match.group())})


def _fields(parts: Iterable[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if eq:
            fields[key.strip().lower()] = value.strip()
    return fields


def _uri_fields(uri: str) -> dict[str, str]:
    parts = urlsplit(uri)
    hosts = [h.rsplit("@", 1)[-1] for h in parts.netloc.split(",")]
    fields = {"host": ",".join(unquote(h.rsplit(":", 1)[0] if not h.startswith("[") else h) for h in hosts)}
    fields.update((k.lower(), v) for k, v in parse_qsl(parts.query))
    return fields


@rule("HAL331", "postgres-plaintext-in-vpc", "error", "security")
def postgres_plaintext_in_vpc(repo: Repo) -> Iterator[Problem]:
    """With vpc_tls (the default), PostgreSQL accepts network clients over TLS 1.2+ only and
    every connection string verifies the server (sslmode=verify-full with sslrootcert).

    Linode's VPC is private, not encrypted: whoever gets onto it - another
    compromised node, a mistake in a peer's firewall - reads passwords and data
    sent in clear. So in the configuration PostgreSQL really runs with
    (includes, postgresql.auto.conf and ALTER SYSTEM followed, the last value
    winning) `ssl` must be on and `ssl_min_protocol_version` at least TLSv1.2;
    the effective pg_hba.conf (hba_file and includes followed) has no `host`
    or `hostnossl` line that admits a client, only `hostssl` (a `host` line
    also takes clients that skip TLS). Every connection string in the node
    trees and scripts/ (the app's PG_DSN, pg_basebackup -d, primary_conninfo,
    pg-failover.sh) says `sslmode=verify-full` and names the stack CA in
    `sslrootcert`: `require` encrypts but believes any server, so a rogue one
    on the VPC collects the password; only verify-full checks the
    certificate and the host name. Silent when the answers set vpc_tls: false.
    """
    if not facts.vpc_tls(repo):
        return
    yield from _server_settings(repo)
    yield from _hba_lines(repo)
    for rel in repo.files:
        if rel.startswith(("nodes/", "scripts/")) and not rel.endswith(".md"):
            for conn in conn_strings(repo.text(rel), sql=rel.endswith(".sql")):
                if conn.over_network:
                    yield from _weak_conn(rel, conn)


def _server_settings(repo: Repo) -> Iterator[Problem]:
    for rel in repo.pg_confs():
        settings = effective.pg(repo, rel).settings
        ssl = settings.get("ssl")
        if ssl is None or ssl.value.strip().lower() not in _TRUE:
            where = (ssl.file or rel, ssl.line) if ssl else (rel, 1)
            yield Problem(*where,
                          f"ssl is {ssl.value if ssl else 'unset (off)'}: network clients talk in clear over the "
                          "VPC, which is private, not encrypted; want ssl = on (the answers set vpc_tls)")
        minimum = settings.get("ssl_min_protocol_version")
        if minimum is not None and minimum.value.strip().lower() not in _STRONG_TLS:
            yield Problem(minimum.file or rel, minimum.line,
                          f"ssl_min_protocol_version = '{minimum.value}': TLS older than 1.2 has known breaks; "
                          "want 'TLSv1.3' (or 'TLSv1.2')")


def _hba_lines(repo: Repo) -> Iterator[Problem]:
    seen: set[tuple[str, int]] = set()
    for rel in effective.hba_files(repo):
        for entry in effective.hba_entries(repo, rel)[0]:
            where = (entry.file or rel, entry.line)
            if entry.type not in {"host", "hostnossl"} or entry.method == "reject" or where in seen:
                continue
            seen.add(where)
            why = ("admits clients without TLS too" if entry.type == "host" else "admits only clients without TLS")
            yield Problem(*where, f"{entry.type} {entry.database} {entry.user} {entry.address}: {why}, in clear "
                          "over a VPC that is private, not encrypted; use hostssl")


def _weak_conn(rel: str, conn: ConnString) -> Iterator[Problem]:
    to = ",".join(conn.hosts) or "?"
    mode = conn.fields.get("sslmode")
    if mode != "verify-full":
        said = f"sslmode={mode}" if mode is not None else "no sslmode (libpq's default is prefer)"
        yield Problem(rel, conn.line, f"connection to {to} with {said}: want sslmode=verify-full - anything less "
                      "lets a rogue server on the VPC (private, not encrypted) take the password and the data")
    if not conn.fields.get("sslrootcert"):
        yield Problem(rel, conn.line, f"connection to {to} without sslrootcert: name the stack CA "
                      "(sslrootcert=/etc/<project>/tls/ca.crt) so verify-full checks the server against it")
