"""Backups to Object Storage, proven by restoring them: PostgreSQL (pgBackRest, full +
differential, WAL archive, point-in-time recovery) and Redis snapshots (restic), against an
S3-compatible server on loopback behind TLS."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from datatier import (
    LoopbackStack,
    as_postgres,
    bucket_bytes,
    cleanup,
    loopback_stack,
    node_script,
    redis_cli,
    require_postgres,
    start_pg,
    start_pg_tier,
    wait_until,
)

from conftest import require

pytestmark = pytest.mark.realserver
ROWS = int(os.environ.get("HALGEN_BACKUP_TEST_ROWS", "700000"))  # about 100 MB with its index


def _sql(ls: LoopbackStack, sql: str, db: str = "app") -> str:
    n = ls.node("db1")
    out = subprocess.run(as_postgres(f"{n.paths.pg_bin}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                                     "-h", n.paths.pg_run_dir, "-d", db, "-c", sql),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _fingerprint(ls: LoopbackStack) -> str:
    return _sql(ls, "SELECT count(*) || ':' || md5(string_agg(id::text || note, ',' ORDER BY id)) FROM events")


def _stop_and_destroy(ls: LoopbackStack) -> None:
    n = ls.node("db1")
    subprocess.run(as_postgres(f"{n.paths.pg_bin}/pg_ctl", "stop", "-D", n.paths.pg_data, "-m", "fast", "-w"),
                   check=True, capture_output=True)
    subprocess.run(["rm", "-rf", n.paths.pg_data], check=True)


def _wait_recovered(ls: LoopbackStack) -> None:
    wait_until(lambda: _sql(ls, "SELECT pg_is_in_recovery()", "postgres") == "f", 300, "recovery to end")


@pytest.fixture
def stack():
    version = require_postgres()
    require("pgbackrest", "restic", "redis-server", "redis-cli", "redis-check-rdb", "nginx", "openssl")
    ls = loopback_stack({"pg_failover": "manual", "pg_version": version, "pg_replicas": 0, "redis_mode": "single", "redis_replicas": 0,
                         "app_servers": 1, "lb_count": 1, "lb_keepalive": 2, "redis_backup_keep": 2})
    try:
        yield ls
    finally:
        cleanup(ls)


def test_postgres_backup_restore_latest_and_point_in_time(stack, record_property) -> None:
    ls = stack
    start_pg_tier(ls)
    _sql(ls, "CREATE TABLE events (id bigserial PRIMARY KEY, note text NOT NULL, pad text NOT NULL)")
    _sql(ls, f"INSERT INTO events (note, pad) SELECT 'base ' || g, repeat(md5(g::text), 3) "
             f"FROM generate_series(1, {ROWS}) g")
    size_mb = int(_sql(ls, "SELECT pg_database_size('app') / 1048576"))
    record_property("database_mb", size_mb)

    started = time.monotonic()
    full = node_script(ls, "db1", "pg-backup", "full")
    full_s = time.monotonic() - started
    assert full.returncode == 0, full.stderr[-3000:]
    newest = _backup_metrics(ls, "db1", "pg")
    assert abs(newest['halgen_backup_completed_timestamp_seconds{kind="pg"}'] - time.time()) < 120
    assert newest['halgen_backup_size_bytes{kind="pg"}'] > 0

    _sql(ls, "INSERT INTO events (note, pad) SELECT 'after full ' || g, 'x' FROM generate_series(1, 1000) g")
    diff = node_script(ls, "db1", "pg-backup", "diff")
    assert diff.returncode == 0, diff.stderr[-3000:]
    _sql(ls, "INSERT INTO events (note, pad) VALUES ('before the target time', 'x')")
    time.sleep(1.1)
    target_time = _sql(ls, "SELECT now()::timestamptz(0)")
    at_target = _fingerprint(ls)
    time.sleep(1.1)
    _sql(ls, "INSERT INTO events (note, pad) VALUES ('after the target time', 'x')")
    latest = _fingerprint(ls)
    _sql(ls, "SELECT pg_switch_wal()", "postgres")
    wait_until(lambda: _sql(ls, "SELECT last_failed_wal IS DISTINCT FROM last_archived_wal AND "
                                "last_archived_wal = pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver",
                            "postgres") == "t", 60, "the last WAL segment to be archived")
    stored = bucket_bytes(ls, f"{ls.stack.project}/pgbackrest/")
    record_property("bucket_bytes", stored)

    _stop_and_destroy(ls)
    started = time.monotonic()
    restore = node_script(ls, "db1", "pg-restore")
    assert restore.returncode == 0, restore.stderr[-3000:]
    start_pg(ls, "db1")
    _wait_recovered(ls)
    restore_s = time.monotonic() - started
    assert _fingerprint(ls) == latest, "the latest restore has every committed row"

    _stop_and_destroy(ls)
    pitr = node_script(ls, "db1", "pg-restore", "--time", target_time)
    assert pitr.returncode == 0, pitr.stderr[-3000:]
    start_pg(ls, "db1")
    _wait_recovered(ls)
    assert _fingerprint(ls) == at_target, "point-in-time restore stops exactly at the target"
    assert _sql(ls, "SELECT count(*) FROM events WHERE note = 'after the target time'") == "0"

    verify = node_script(ls, "db1", "pg-verify")
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "latest backup restored and queried in" in verify.stdout
    verified = verify.stdout.strip().splitlines()[-1]
    record_property("verify", verified)
    print(f"\npostgres: {size_mb} MB database, full backup {full_s:.1f} s, restore to latest {restore_s:.1f} s, "
          f"{stored} bytes in the bucket; {verified}")


def _backup_metrics(ls, node: str, kind: str) -> dict[str, float]:
    """What the backup job wrote for node_exporter's textfile collector (the alerts read it)."""
    prom = Path(ls.node(node).paths.textfile_dir) / f"{ls.stack.project}-{kind}-backups.prom"
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in prom.read_text().splitlines()}


def test_redis_snapshot_round_trip_and_retention(stack, record_property) -> None:
    ls = stack
    node = ls.node("redis1")
    ls.spawn(["redis-server", f"{node.paths.redis_conf_dir}/redis.conf"], "redis1")
    wait_until(lambda: redis_cli(ls, node.address, 6379, "PING") == "PONG", 15, "redis")
    for i in (0, 500, 1000, 1500):
        redis_cli(ls, node.address, 6379, "SET", f"session:{i}", f"user-{i}")
    redis_cli(ls, node.address, 6379, "EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'cache:' .. i, "
              "string.rep('x', 64)) end", "0", "20000")
    keys = redis_cli(ls, node.address, 6379, "DBSIZE")
    assert int(keys) == 20004

    started = time.monotonic()
    for _ in range(3):
        backup = node_script(ls, "redis1", "redis-backup")
        assert backup.returncode == 0, backup.stderr + backup.stdout
    backup_s = (time.monotonic() - started) / 3
    newest = _backup_metrics(ls, "redis1", "redis")
    assert abs(newest['halgen_backup_completed_timestamp_seconds{kind="redis"}'] - time.time()) < 120
    listed = node_script(ls, "redis1", "redis-restore", "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(f"{ls.stack.project}-redis") == 2, f"redis_backup_keep: 2, kept by restic\n{listed.stdout}"
    prefix = f"{ls.stack.project}/restic/redis/"
    record_property("redis_repository_bytes", bucket_bytes(ls, prefix))
    restored = ls.base / "restored.rdb"
    started = time.monotonic()
    result = node_script(ls, "redis1", "redis-restore", str(restored))
    assert result.returncode == 0, result.stderr
    scratch = ls.base / "redis-restored"
    scratch.mkdir()
    restored.rename(scratch / "dump.rdb")
    ls.spawn(["redis-server", "--bind", "127.20.0.99", "--port", "6379", "--dir", str(scratch),
              "--dbfilename", "dump.rdb", "--appendonly", "no", "--save", ""], "redis-restored")
    wait_until(lambda: subprocess.run(["redis-cli", "-h", "127.20.0.99", "PING"], capture_output=True, text=True)
               .stdout.strip() == "PONG", 15, "the restored redis")
    restore_s = time.monotonic() - started
    record_property("redis_backup_s", round(backup_s, 2))
    record_property("redis_restore_s", round(restore_s, 2))
    print(f"\nredis: {keys} keys; backup {backup_s:.1f} s each, restored in {restore_s:.1f} s")
    restored_cli = ["redis-cli", "-h", "127.20.0.99"]
    assert subprocess.run([*restored_cli, "DBSIZE"], capture_output=True, text=True).stdout.strip() == keys
    assert subprocess.run([*restored_cli, "GET", "session:1500"], capture_output=True, text=True).stdout.strip() \
        == "user-1500"


def test_a_tampered_redis_backup_is_refused(stack) -> None:
    """restic authenticates what it reads: one changed byte in the bucket fails the restore."""
    ls = stack
    node = ls.node("redis1")
    ls.spawn(["redis-server", f"{node.paths.redis_conf_dir}/redis.conf"], "redis1")
    wait_until(lambda: redis_cli(ls, node.address, 6379, "PING") == "PONG", 15, "redis")
    redis_cli(ls, node.address, 6379, "SET", "session:1", "alice")
    backup = node_script(ls, "redis1", "redis-backup")
    assert backup.returncode == 0, backup.stderr + backup.stdout
    assert node_script(ls, "redis1", "redis-restore", str(ls.base / "good.rdb")).returncode == 0

    bucket = ls.stack.backup_bucket
    listing = ls.s3.list_objects_v2(Bucket=bucket, Prefix=f"{ls.stack.project}/restic/redis/data/")["Contents"]
    for obj in listing:
        body = bytearray(ls.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        body[len(body) // 3] ^= 0x01
        ls.s3.put_object(Bucket=bucket, Key=obj["Key"], Body=bytes(body))
    result = node_script(ls, "redis1", "redis-restore", str(ls.base / "tampered.rdb"))
    assert result.returncode != 0, "a modified backup must not restore"
    assert not (ls.base / "tampered.rdb").exists()
