"""Sizing from a Linode plan, kept as tables of formulas.

PostgreSQL follows pgtune's "web" profile; each entry is (setting, formula) and
every formula reads only the node's plan and the answers, so one table
explains every sized value. Answers' pg_settings override any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

KB_PER_MB = 1024


@dataclass(frozen=True)
class PgInputs:
    ram_mb: int
    vcpus: int
    disk_gb: int
    max_connections: int

    @property
    def workers(self) -> int:
        return max(8, self.vcpus)  # PostgreSQL's default is 8


def _mb(value: float) -> str:
    return f"{max(1, int(value))}MB"


def _kb(value: float) -> str:
    return f"{max(64, int(value))}kB"


def _work_mem_kb(p: PgInputs) -> float:
    shared_kb = p.ram_mb * KB_PER_MB / 4
    return (p.ram_mb * KB_PER_MB - shared_kb) / ((p.max_connections + p.workers) * 3)


PG_WEB_PROFILE: list[tuple[str, Callable[[PgInputs], str]]] = [
    ("shared_buffers", lambda p: _mb(p.ram_mb / 4)),
    ("effective_cache_size", lambda p: _mb(p.ram_mb * 3 / 4)),
    ("maintenance_work_mem", lambda p: _mb(min(p.ram_mb / 16, 2048))),
    ("work_mem", lambda p: _kb(_work_mem_kb(p))),
    ("wal_buffers", lambda p: _kb(min(p.ram_mb / 4 * 0.03 * KB_PER_MB, 16 * KB_PER_MB))),
    ("min_wal_size", lambda p: "1GB"),
    ("max_wal_size", lambda p: "4GB"),
    ("checkpoint_completion_target", lambda p: "0.9"),
    ("default_statistics_target", lambda p: "100"),
    ("random_page_cost", lambda p: "1.1"),  # Linode disks are SSDs
    ("effective_io_concurrency", lambda p: "200"),
    ("max_worker_processes", lambda p: str(p.workers)),
    ("max_parallel_workers", lambda p: str(p.vcpus)),
    ("max_parallel_workers_per_gather", lambda p: str(min(4, math.ceil(p.vcpus / 2)))),
    ("max_parallel_maintenance_workers", lambda p: str(min(4, math.ceil(p.vcpus / 2)))),
    ("huge_pages", lambda p: "try" if p.ram_mb >= 32 * 1024 else "off"),
    # Replication slots keep WAL for absent replicas; bound it to a fifth of the disk.
    ("max_slot_wal_keep_size", lambda p: _mb(p.disk_gb * 1024 / 5)),
]

# Settings the blueprint sets itself from the answers; pg_settings may not override them.
PG_MANAGED = frozenset({
    "listen_addresses", "port", "data_directory", "hba_file", "ident_file", "external_pid_file",
    "unix_socket_directories", "cluster_name", "wal_level", "hot_standby", "password_encryption",
    "synchronous_standby_names", "synchronous_commit", "primary_conninfo", "primary_slot_name",
    "archive_mode", "archive_command", "max_connections", "max_wal_senders", "max_replication_slots",
    "wal_log_hints",
})


def pg_settings(p: PgInputs, overrides: Mapping[str, str | int]) -> dict[str, str]:
    sized = {name: formula(p) for name, formula in PG_WEB_PROFILE}
    return {**sized, **{k: str(v) for k, v in sorted(overrides.items())}}


def redis_maxmemory_mb(ram_mb: int, persistence: str) -> int:
    # Saving forks Redis; copy-on-write can need up to the dataset's size again.
    share = 0.7 if persistence == "none" else 0.5
    return int(ram_mb * share)
