"""The automatic PostgreSQL failover holds together: etcd's quorum, Patroni's timing, and
every DB node under Patroni with the same view of etcd."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from halgen.errors import Problem
from halgen.formats import envfile
from halgen.lint.registry import rule
from halgen.lint.repo import Repo, node_of

ETCD_FILE = r"nodes/[^/]+/etc/default/etcd"
PATRONI_FILE = r"nodes/[^/]+/etc/patroni/config\.yml"


def _patroni(repo: Repo, rel: str) -> dict[str, Any] | None:
    try:
        config = YAML(typ="safe").load(repo.text(rel))
    except YAMLError:
        return None
    return config if isinstance(config, dict) else None


def _initial_cluster(value: str) -> dict[str, str]:
    """ETCD_INITIAL_CLUSTER 'name=https://host:port,...' -> name: host."""
    members = {}
    for part in value.split(","):
        name, _, url = part.strip().partition("=")
        members[name] = urlsplit(url).hostname or ""
    return members


@rule("HAL410", "etcd-quorum", "error", "operations")
def etcd_quorum(repo: Repo) -> Iterator[Problem]:
    """etcd has an odd number of members, at least 3, on distinct nodes, and every member lists the same cluster.

    Patroni's leader lock lives in etcd, and etcd answers only while a majority
    of its members is up: two members survive no loss (a majority of 2 is 2),
    four survive one, like three. Members on one node fall together. A member
    whose ETCD_INITIAL_CLUSTER differs from the others' forms a cluster of its
    own at first boot.
    """
    files = repo.glob(ETCD_FILE)
    clusters = {}
    for rel in files:
        settings = envfile.parse(repo.text(rel))[0]
        setting = settings.get("ETCD_INITIAL_CLUSTER")
        if setting is None:
            yield Problem(rel, 1, "no ETCD_INITIAL_CLUSTER: this member joins no cluster")
            continue
        members = _initial_cluster(setting.value)
        clusters[rel] = (setting.line, members)
        if len(members) < 3 or len(members) % 2 == 0:
            yield Problem(rel, setting.line, f"{len(members)} etcd members: a quorum needs an odd number, at least 3 "
                          f"(with {len(members)}, losing {'any' if len(members) < 3 else 'two'} stops failover)")
        hosts = [host for host in members.values()]
        for host in sorted({h for h in hosts if hosts.count(h) > 1}):
            yield Problem(rel, setting.line, f"two etcd members on {host}: they fail together")
        name = settings.get("ETCD_NAME")
        if name is not None and name.value not in members:
            yield Problem(rel, name.line, f"ETCD_NAME {name.value} is not in ETCD_INITIAL_CLUSTER")
    distinct = {tuple(sorted(members.items())) for _, members in clusters.values()}
    if len(distinct) > 1:
        for rel, (line, _) in sorted(clusters.items()):
            yield Problem(rel, line, "the members disagree on ETCD_INITIAL_CLUSTER: each would start its own cluster")


@rule("HAL411", "patroni-timing", "error", "operations")
def patroni_timing(repo: Repo) -> Iterator[Problem]:
    """Patroni's loop_wait + 2 x retry_timeout is at most its ttl.

    A primary cut off from etcd retries for retry_timeout, twice, between
    loops of loop_wait, before it demotes itself; if its lock (ttl) expires
    first, a replica is promoted while the old primary still accepts writes.
    """
    for rel in repo.glob(PATRONI_FILE):
        config = _patroni(repo, rel)
        dcs = ((config or {}).get("bootstrap") or {}).get("dcs") or {}
        try:
            ttl, loop, retry = (int(dcs.get(k, d)) for k, d in (("ttl", 30), ("loop_wait", 10), ("retry_timeout", 10)))
        except (TypeError, ValueError):
            yield Problem(rel, repo.line_of(rel, r"^\s+ttl:"), "ttl, loop_wait and retry_timeout must be whole seconds")
            continue
        if loop + 2 * retry > ttl:
            yield Problem(rel, repo.line_of(rel, r"^\s+ttl:"), f"loop_wait {loop} + 2 x retry_timeout {retry} = "
                          f"{loop + 2 * retry} s exceeds ttl {ttl} s: a cut-off primary outlives its lock")


@rule("HAL412", "patroni-members", "error", "consistency")
def patroni_members(repo: Repo) -> Iterator[Problem]:
    """Under Patroni, every DB node runs it, in one scope, with the etcd members as its hosts.

    A DB node without Patroni is a PostgreSQL nobody fails over or fences; one
    in another scope, or pointed at other etcd hosts, elects a primary of its
    own beside the real one.
    """
    stack = repo.stack
    configs = {node_of(rel): rel for rel in repo.glob(PATRONI_FILE)}
    if stack is None or not stack.patroni:
        return
    members = {n.address for n in stack.etcd_members}
    scopes = {}
    for node in stack.dbs:
        rel = configs.get(node.name)
        if rel is None:
            yield Problem(f"nodes/{node.name}", 0, f"{node.name} has no etc/patroni/config.yml: nobody fails over "
                          "or fences its PostgreSQL")
            continue
        config = _patroni(repo, rel) or {}
        scopes[rel] = config.get("scope")
        dcs = config.get("etcd") or config.get("etcd3") or {}
        hosts = {str(h).rpartition(":")[0] for h in str(dcs.get("hosts", "")).split(",") if h}
        if hosts != members:
            yield Problem(rel, repo.line_of(rel, r"^\s+hosts:"), f"etcd hosts {', '.join(sorted(hosts)) or 'none'} "
                          f"are not the etcd members ({', '.join(sorted(members))})")
    if len(set(scopes.values())) > 1:
        for rel, scope in sorted(scopes.items()):
            yield Problem(rel, repo.line_of(rel, r"^scope:"), f"scope {scope}: the DB nodes are in different clusters")
