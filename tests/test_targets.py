"""A rehearsal render differs from a Linode render only in addresses and path prefixes,
and every golden case's data-tier configs are accepted by the real servers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from datatier import (
    LoopbackStack,
    as_postgres,
    chown_postgres,
    cleanup,
    installed_pg_version,
    loopback_stack,
    redis_cli,
    require_postgres,
    wait_until,
)
from halgen.compiler import pipeline
from halgen.compiler.write import render

from conftest import GOLDEN, golden_cases, require, tree

_IPV4 = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?\b")


def _normalise(text: str, prefix: str) -> str:
    text = re.sub(re.escape(prefix) + r"/[a-z]+[0-9]+", "", text)
    # The host backup tools connect to: the endpoint's name on Linode, an address in a rehearsal.
    text = re.sub(r"(repo1-storage-host=)\S+", r"\1<ip>", text)
    text = re.sub(r"(s3:https://)[^/]+", r"\1<ip>", text)  # restic's repository
    # The ACME server: Let's Encrypt on Linode, a local pebble in a rehearsal.
    text = re.sub(r"https://[^\s/]+/dir(ectory)?\b", "<acme>", text)
    # Patroni's watchdog: softdog on a node, a stand-in that cannot reset this machine in a rehearsal.
    text = re.sub(r"\n  # a rehearsal's stand-in for softdog.*\n  driver: testing\n  device: \S+", "", text)
    text = _IPV4.sub("<ip>", text)
    return re.sub(r"[ \t]+", " ", text)


def _comparable(content: bytes, prefix: str) -> str:
    return _normalise(content.decode(), prefix)


@pytest.mark.parametrize("case", golden_cases())
def test_rehearsal_differs_only_in_addresses_and_prefixes(case: str, tmp_path: Path) -> None:
    answers = pipeline.load_answers(GOLDEN / case / "answers.yml")
    prefix = tmp_path / "nodes"
    render(answers, tmp_path / "repo", target=pipeline.rehearsal_target(prefix, "127.20.0.0/16"))
    linode, rehearsal = tree(GOLDEN / case / "expected"), tree(tmp_path / "repo")
    assert sorted(linode) == sorted(rehearsal)
    different = [name for name in linode
                 if _comparable(linode[name], str(prefix)) != _comparable(rehearsal[name], str(prefix))]
    assert not different
    assert any(linode[name] != rehearsal[name] for name in linode), "a rehearsal must not target Linode addresses"
    for name, content in rehearsal.items():
        if name != ".copier-answers.yml":  # the answers themselves are not rewritten
            found = {m.group(0).split("/")[0] for m in _IPV4.finditer(content.decode())}
            outside = {c.split("/")[0] for c in answers.admin_cidrs} | {"0.0.0.0"}  # not node addresses
            assert all(ip.startswith("127.") or ip in outside for ip in found), f"{name}: {found}"


@pytest.mark.parametrize("case", golden_cases())
def test_db_nodes_share_one_postgresql_conf_but_the_address(case: str) -> None:
    """So starting one node's config proves them all, and a promoted replica needs no edit."""
    confs = sorted((GOLDEN / case / "expected" / "nodes").glob("db*/etc/postgresql/*/main/postgresql.conf"))
    assert confs

    def _without_node_lines(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if not ln.startswith(("listen_addresses", "# PostgreSQL", "# Initially"))]

    first = _without_node_lines(confs[0].read_text())
    assert all(_without_node_lines(c.read_text()) == first for c in confs[1:])


def _golden_on_loopback(case: str, **overrides: object) -> LoopbackStack:
    answers = pipeline.load_answers(GOLDEN / case / "answers.yml")
    return loopback_stack({**answers.to_dict(), **overrides})


@pytest.mark.realserver
@pytest.mark.parametrize("case", golden_cases())
def test_postgres_accepts_golden_config(case: str) -> None:
    version = require_postgres()
    # Settings are the same for 14-17; the machine has one server version.
    ls = _golden_on_loopback(case, pg_version=version)
    try:
        for db in ls.stack.dbs:
            chown_postgres(Path(db.paths.root))
        n = ls.stack.dbs[0]
        init = subprocess.run(as_postgres(f"{n.paths.pg_bin}/initdb", "-D", n.paths.pg_data, "-U", "postgres",
                                          "--no-instructions"), capture_output=True, text=True)
        assert init.returncode == 0, init.stderr
        ls.spawn(as_postgres(f"{n.paths.pg_bin}/postgres", "-c", f"config_file={n.paths.pg_conf_dir}/postgresql.conf"),
                 n.name)
        wait_until(lambda: subprocess.run([f"{n.paths.pg_bin}/pg_isready", "-q", "-h", n.paths.pg_run_dir]).returncode == 0,
                   30, "postgres to start")
        errors = subprocess.run(as_postgres(f"{n.paths.pg_bin}/psql", "-X", "-A", "-t", "-h", n.paths.pg_run_dir, "-d",
                                            "postgres", "-c", "SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL"
                                            " OR NOT applied"), capture_output=True, text=True)
        assert errors.stdout.strip() == "0", errors.stdout + errors.stderr
        hba = subprocess.run(as_postgres(f"{n.paths.pg_bin}/psql", "-X", "-A", "-t", "-h", n.paths.pg_run_dir, "-d",
                                         "postgres", "-c", "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"),
                             capture_output=True, text=True)
        assert hba.stdout.strip() == "0", hba.stdout + hba.stderr
    finally:
        cleanup(ls)


@pytest.mark.realserver
@pytest.mark.parametrize("case", golden_cases())
def test_redis_and_sentinel_accept_golden_config(case: str) -> None:
    require("redis-server", "redis-sentinel", "redis-cli")
    ls = _golden_on_loopback(case)
    try:
        for node in ls.stack.redis:
            ls.spawn(["redis-server", f"{node.paths.redis_conf_dir}/redis.conf"], f"redis-{node.name}")
            wait_until(lambda n=node: redis_cli(ls, n.address, 6379, "PING") == "PONG", 15, f"redis on {node.name}")
        for node in ls.stack.sentinels:
            ls.spawn(["redis-sentinel", f"{node.paths.redis_conf_dir}/sentinel.conf"], f"sentinel-{node.name}")
            wait_until(lambda n=node: redis_cli(ls, n.address, 26379, "PING") == "PONG", 15, f"sentinel on {node.name}")
    finally:
        cleanup(ls)


def test_installed_pg_version_is_known() -> None:
    version = installed_pg_version()
    assert version is None or 14 <= version <= 17
