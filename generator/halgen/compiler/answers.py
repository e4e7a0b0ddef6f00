"""Typed answers: the complete, valid answers of one stack as a frozen, hashable value.

Built only after the schema and the cross-field rules passed, so every field is
present and of its schema type; lists become tuples and mappings ``FrozenMap``,
so an ``Answers`` can key a cache directly. ``tests/test_answers.py`` checks the
fields against ``schema/answers.schema.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable, hashable mapping that keeps its insertion order."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Mapping[K, V] | None = None):
        self._items: dict[K, V] = dict(items or {})
        self._hash = hash(tuple(self._items.items()))

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


@dataclass(frozen=True)
class Admin:
    name: str
    ssh_keys: tuple[str, ...]


@dataclass(frozen=True)
class Answers:
    """One field per property of the answers' JSON Schema, in schema order."""

    project: str
    domains: tuple[str, ...]
    admin_email: str
    region: str
    image: str
    vpc_subnet: str
    node_addresses: FrozenMap[str, str]
    lb_count: int
    lb_plan: str
    lb_weights: FrozenMap[str, int]
    lb_max_fails: int
    lb_fail_timeout_s: int
    lb_keepalive: int
    lb_keepalive_timeout_s: int
    lb_connect_timeout_s: int
    lb_read_timeout_s: int
    lb_next_upstream_tries: int
    lb_next_upstream_timeout_s: int
    lb_client_max_body_size: str
    lb_static_paths: tuple[str, ...]
    lb_static_expires: str
    lb_health_path: str
    app_check_path: str
    lb_tls: bool
    acme_directory: str
    lb_rate_limit_rps: int
    lb_rate_limit_burst: int
    lb_conn_limit: int
    lb_client_timeout_s: int
    lb_header_hsts: bool
    lb_header_nosniff: bool
    lb_header_frame_options: bool
    lb_header_referrer_policy: bool
    app_servers: int
    app_plan: str
    app_server: str
    app_instances: int
    app_workers: int
    app_port: int
    app_keepalive_timeout_s: int
    app_max_requests: int
    app_psgi: str
    app_module: str
    app_repo: str
    app_repo_host_keys: tuple[str, ...]
    app_ref: str
    cpan_mirror: str
    app_user: str
    db_plan: str
    pg_version: int
    pg_replicas: int
    pg_replication: str
    pg_failover: str
    pg_sync_strict: bool
    patroni_ttl: int
    patroni_loop_wait: int
    patroni_retry_timeout: int
    patroni_watchdog: str
    etcd_count: int
    etcd_nodes: tuple[str, ...]
    pg_max_connections: int
    pg_settings: FrozenMap[str, str | int]
    pg_database: str
    pg_app_user: str
    redis_plan: str
    redis_mode: str
    redis_replicas: int
    sentinel_count: int
    redis_persistence: str
    redis_maxmemory_policy: str
    vpc_tls: bool
    backup_endpoint: str
    backup_offsite: bool
    backup_bucket: str
    backup_schedule: str
    backup_diff_schedule: str
    backup_verify_schedule: str
    redis_backup_schedule: str
    redis_backup_keep: int
    backup_retention_full: int
    backup_retention_days: int
    monitoring: bool
    mon_plan: str
    mon_retention_days: int
    alert_smtp_relay: str
    alert_smtp_user: str
    alert_email_from: str
    alert_webhook_url: str
    admins: tuple[Admin, ...]
    admin_cidrs: tuple[str, ...]
    admin_cidrs_allow_internet: bool
    ci_halgen_source: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answers:
        """Complete answers (every field, schema-valid) -> Answers."""
        values = {f.name: _freeze(data[f.name]) for f in dataclasses.fields(cls)}
        values["admins"] = tuple(Admin(a["name"], tuple(a["ssh_keys"])) for a in data["admins"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-like values (lists and dicts), as copier and templates see answers."""
        return {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Answers:
        return dataclasses.replace(self, **{k: _freeze(v) for k, v in changes.items()})


def freeze(data: Any) -> Any:
    """Plain JSON-like data -> a hashable equivalent (tuples and FrozenMaps)."""
    return _freeze(data)


def thaw(data: Any) -> Any:
    """The inverse of ``freeze``: plain lists and dicts again."""
    return _thaw(data)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return FrozenMap({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Admin):
        return {"name": value.name, "ssh_keys": list(value.ssh_keys)}
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value
