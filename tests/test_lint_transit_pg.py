"""HAL331 (PostgreSQL over verified TLS inside the VPC): on unless the answers turn vpc_tls
off, and which strings it reads as connection strings. tests/test_lint.py's mutations
cover each defect on the golden repos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from halgen.lint import lint
from halgen.lint.rules.transit_pg import conn_strings

from conftest import GOLDEN

ANSWERS = ".copier-answers.yml"
PG_DIR = "nodes/db1/etc/postgresql/15/main"


def _plaintext_repo(tmp_path: Path, vpc_tls_line: str) -> Path:
    """The default stack with PostgreSQL in the clear, and vpc_tls_line in place of the answer."""
    repo = Path(shutil.copytree(GOLDEN / "default-ha" / "expected", tmp_path / "repo"))
    answers = repo / ANSWERS
    answers.write_text(answers.read_text().replace("vpc_tls: true\n", vpc_tls_line))
    for rel, text in ((f"{PG_DIR}/postgresql.conf", "ssl = off\n"),
                      (f"{PG_DIR}/pg_hba.conf", "host app app 10.0.0.40/32 scram-sha-256\n")):
        with (repo / rel).open("a") as file:
            file.write(text)
    env = repo / "nodes/app1/etc/shop/app.env"
    env.write_text(env.read_text().replace("sslmode=verify-full", "sslmode=disable"))
    return repo


def _hal331(repo: Path) -> list[str]:
    return [f"{f.file}:{f.line}" for f in lint(repo, tools=False, select={"HAL331"}).findings]


def test_silent_when_vpc_tls_is_false(tmp_path: Path) -> None:
    assert _hal331(_plaintext_repo(tmp_path, "vpc_tls: false\n")) == []


@pytest.mark.parametrize("line", ["vpc_tls: true\n", ""], ids=["true", "absent"])
def test_on_when_vpc_tls_is_true_or_absent(tmp_path: Path, line: str) -> None:
    found = _hal331(_plaintext_repo(tmp_path, line))
    assert {f"{PG_DIR}/postgresql.conf", f"{PG_DIR}/pg_hba.conf", "nodes/app1/etc/shop/app.env"} \
        == {f.rsplit(":", 1)[0] for f in found}


def test_connection_strings_found() -> None:
    text = "\n".join([
        'grep -q "host=$PRIMARY_ADDRESS " auto.conf',  # one keyword: a search, not a connection
        "psql 'host=/var/run/postgresql port=5432 dbname=app'",  # a socket
        "PG_DSN=dbi:Pg:dbname=app;host=10.0.0.20;sslmode=require",
        "# pg_basebackup -d 'host=10.0.0.20 port=5432'",  # a comment
        "primary_conninfo = 'host=10.0.0.20 port=5432 sslmode=verify-full sslmode=disable'",  # the last one wins
        'conninfo="host=$(field "$NEW" 1) port=5432 sslmode=verify-full sslrootcert=$(field "$n" 6)"',
        "URL=postgresql://app@10.0.0.20:5432/app?sslmode=verify-full&sslrootcert=/etc/ca.crt",
        "psql \"host='10.0.0.21' user=app sslmode='verify-full'\"",
    ])
    found = [(c.line, c.hosts, c.fields.get("sslmode"), c.over_network) for c in conn_strings(text)]
    assert found == [
        (2, ["/var/run/postgresql"], None, False),
        (3, ["10.0.0.20"], "require", True),
        (5, ["10.0.0.20"], "disable", True),
        (6, ['$(field "$NEW" 1)'], "verify-full", True),
        (7, ["10.0.0.20"], "verify-full", True),
        (8, ["10.0.0.21"], "verify-full", True),
    ]


def test_sql_comments_are_skipped_only_in_sql() -> None:
    line = "-- pg_basebackup 'host=10.0.0.20 port=5432'"
    assert list(conn_strings(line, sql=True)) == []
    assert len(list(conn_strings(line))) == 1  # a shell line may start with --dbname=...
