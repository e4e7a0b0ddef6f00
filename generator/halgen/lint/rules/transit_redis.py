"""Encryption in transit inside the VPC: Redis and Sentinel (answer vpc_tls)."""

from __future__ import annotations

from collections.abc import Iterator

from halgen.errors import Problem
from halgen.lint import effective, facts
from halgen.lint.effective import RedisConfig
from halgen.lint.registry import rule
from halgen.lint.repo import Repo

# Directives a TLS-only Redis or Sentinel needs, each with any value but an empty one.
_TLS_FILES = ("tls-cert-file", "tls-key-file", "tls-ca-cert-file")


@rule("HAL330", "redis-plaintext-in-vpc", "error", "security")
def redis_plaintext_in_vpc(repo: Repo) -> Iterator[Problem]:
    """With `vpc_tls: true`, every Redis and Sentinel speaks TLS only: `port 0`, a
    `tls-port`, its certificate, key and the stack CA, and `tls-replication yes`.

    Linode's VPC is private, not encrypted: a plaintext port carries every
    session and every ACL password in the clear to anyone who can watch the
    VPC. A missing `port` line means Redis's default, plaintext 6379. Without
    `tls-replication yes` a replica syncs from its master, and a Sentinel
    talks to Redis and to the other Sentinels, in plaintext (or not at all,
    when no plaintext port is left). Includes are followed; the last line of
    each directive wins, as in Redis.
    """
    if not facts.vpc_tls(repo):
        return
    for rel in repo.redis_confs() + repo.sentinel_confs():
        yield from _plaintext(rel, effective.redis(repo, rel))


def _plaintext(rel: str, config: RedisConfig) -> Iterator[Problem]:
    def at(name: str) -> tuple[str, int]:
        found = config.last(name)
        return (found.file or rel, found.line if found.file else 1) if found else (rel, 1)

    port = config.last("port")
    if port is None or port.args != ("0",):
        shown = f"port {port.args[0]}" if port and port.args else "no `port 0` (the default is 6379)"
        yield Problem(*at("port"), f"{shown}: a plaintext port besides TLS")
    tls_port = config.last("tls-port")
    if tls_port is None or not tls_port.args or tls_port.args[0] in ("0", ""):
        yield Problem(*at("tls-port"), "no tls-port: no TLS listener")
    for name in _TLS_FILES:
        found = config.last(name)
        if found is None or not found.args or not found.args[0]:
            yield Problem(*at(name), f"no {name}: TLS cannot start")
    replication = config.last("tls-replication")
    if replication is None or replication.args != ("yes",):
        yield Problem(*at("tls-replication"), "no `tls-replication yes`: replication (and Sentinel's links to Redis "
                      "and the other Sentinels) would not use TLS")
