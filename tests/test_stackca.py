"""The stack CA: made by 'halgen build' in secrets/tls/, a certificate per TLS server node,
renewed when due or on demand, and the CA key never on any node."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from halgen.compiler import cloudinit, pipeline, stackca
from halgen.compiler.model import derive
from halgen.compiler.write import render

from conftest import GOLDEN, halgen

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    render(pipeline.load_answers(GOLDEN / "default-ha" / "answers.yml"), out)
    return out


def _stack(repo: Path):
    return derive(pipeline.load_repo_answers(repo))


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_build_makes_a_ca_and_a_certificate_per_tls_server(repo: Path) -> None:
    stack = _stack(repo)
    certs = stackca.ensure(repo, stack, now=NOW)
    ca = _cert(certs.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=3650)
    # PostgreSQL and Redis nodes, and the app server carrying a Sentinel; no load balancer.
    assert sorted(certs.nodes) == sorted(n.name for n in stack.tls_servers) == ["app1", "db1", "db2", "redis1",
                                                                                 "redis2"]
    for node in stack.tls_servers:
        cert = _cert(certs.nodes[node.name].cert)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(node.address)]
        assert names.get_values_for_type(x509.DNSName) == [node.hostname]
        assert cert.not_valid_after_utc - NOW == timedelta(days=365)
        assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    tls = repo / stackca.TLS_DIR
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tls.iterdir())


def test_certificates_are_kept_until_due_then_renewed_with_the_same_ca(repo: Path) -> None:
    stack = _stack(repo)
    first = stackca.ensure(repo, stack, now=NOW)
    assert stackca.ensure(repo, stack, now=NOW + timedelta(days=300)) == first
    due = stackca.ensure(repo, stack, now=NOW + timedelta(days=340))  # within 30 days of expiry
    assert due.ca_cert == first.ca_cert
    assert all(due.nodes[n].cert != first.nodes[n].cert and due.nodes[n].key != first.nodes[n].key
               for n in first.nodes)
    forced = stackca.ensure(repo, stack, renew=True, now=NOW + timedelta(days=341))
    assert forced.ca_cert == first.ca_cert and all(forced.nodes[n] != due.nodes[n] for n in due.nodes)


def test_a_node_whose_address_changed_gets_a_new_certificate(repo: Path) -> None:
    stack = _stack(repo)
    first = stackca.ensure(repo, stack, now=NOW)
    moved = derive(stack.a.replace(node_addresses={"db2": "10.0.0.99"}))
    again = stackca.ensure(repo, moved, now=NOW)
    assert again.nodes["db2"] != first.nodes["db2"] and again.nodes["db1"] == first.nodes["db1"]
    names = _cert(again.nodes["db2"].cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.99")]


def test_a_new_ca_reissues_every_node_certificate(repo: Path) -> None:
    stack = _stack(repo)
    first = stackca.ensure(repo, stack, now=NOW)
    for name in (stackca.CA_CERT, stackca.CA_KEY):
        (repo / stackca.TLS_DIR / name).unlink()
    second = stackca.ensure(repo, stack, now=NOW)
    assert second.ca_cert != first.ca_cert
    for name, node in second.nodes.items():
        _cert(node.cert).verify_directly_issued_by(_cert(second.ca_cert))
        assert node != first.nodes[name]


def test_half_a_ca_is_a_clean_error(repo: Path) -> None:
    stackca.ensure(repo, _stack(repo), now=NOW)
    (repo / stackca.TLS_DIR / stackca.CA_KEY).unlink()
    with pytest.raises(stackca.CertificateError, match=r"ca\.key: missing, but its partner is there"):
        stackca.ensure(repo, _stack(repo), now=NOW)
    result = halgen("build", str(repo), "--allow-placeholders")
    assert result.returncode == 2 and "ca.key: missing" in result.stderr


def test_ca_key_never_reaches_a_node_and_keys_only_where_a_server_reads_them(repo: Path) -> None:
    result = halgen("build", str(repo), "--allow-placeholders")
    assert result.returncode == 0, result.stderr
    stack = _stack(repo)
    ca_key = (repo / stackca.TLS_DIR / stackca.CA_KEY).read_text()
    ca_key_body = "".join(ca_key.splitlines()[1:-1])
    for node in stack.nodes:
        document = (repo / "build/user-data" / f"{node.name}.yaml").read_text()
        files = cloudinit.unpack(document)
        contents = b"".join(content for content, *_ in files.values()).decode()
        assert ca_key_body not in "".join(contents.splitlines()), f"the CA key reached {node.name}"
        keys = {path: owner for path, (content, owner, _, mode) in files.items() if b"PRIVATE KEY" in content}
        expected = {}
        if node.role == "db":
            expected[node.paths.pg_key_file] = "postgres"
        if node.role == "redis" or node.sentinel:
            expected[node.paths.redis_key_file] = "redis"
        assert keys == expected, node.name
        assert all(files[path][3] == 0o600 for path in keys)
        ca = files.get(node.paths.stack_ca_file)
        if node.role == "lb":
            assert ca is None
        else:
            assert ca is not None and ca[0].decode() == stackca.ensure(repo, stack).ca_cert and ca[3] == 0o644


def test_builds_are_repeatable_and_renew_certs_is_one_command(repo: Path) -> None:
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    first = (repo / "build/user-data/db1.yaml").read_text()
    assert halgen("build", str(repo), "--allow-placeholders").returncode == 0
    assert (repo / "build/user-data/db1.yaml").read_text() == first
    ca = (repo / stackca.TLS_DIR / stackca.CA_CERT).read_text()
    result = halgen("build", str(repo), "--allow-placeholders", "--renew-certs")
    assert result.returncode == 0, result.stderr
    assert (repo / "build/user-data/db1.yaml").read_text() != first
    assert (repo / stackca.TLS_DIR / stackca.CA_CERT).read_text() == ca
    assert "--renew-certs" in halgen("build", "--help").stdout


def test_forced_rerender_keeps_the_ca(repo: Path) -> None:
    stackca.ensure(repo, _stack(repo), now=NOW)
    before = {p.name: p.read_bytes() for p in (repo / stackca.TLS_DIR).iterdir()}
    assert halgen("render", str(GOLDEN / "default-ha" / "answers.yml"), "--out", str(repo), "--force").returncode == 0
    assert {p.name: p.read_bytes() for p in (repo / stackca.TLS_DIR).iterdir()} == before


def test_stand_ins_are_fixed_and_real_sized(repo: Path) -> None:
    stack = _stack(repo)
    assert stackca.stand_ins(stack) == stackca.stand_ins(stack)
    real = stackca.ensure(repo, stack, now=NOW)
    stand_in = stackca.stand_ins(stack)
    assert abs(len(stand_in.ca_cert) - len(real.ca_cert)) <= 8
    assert all(abs(len(stand_in.nodes[n].cert) - len(real.nodes[n].cert)) <= 8 for n in real.nodes)


def test_rehearsal_certificates_name_the_loopback_addresses(tmp_path: Path) -> None:
    out = tmp_path / "rehearsal"
    result = halgen("render", "--out", str(out), "--rehearsal", str(tmp_path / "n"),
                    "--loopback-subnet", "127.21.0.0/24")
    assert result.returncode == 0, result.stderr
    cert = _cert((out / stackca.TLS_DIR / "db1.crt").read_text())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.21.0.20")]
    app_env = next((out / "nodes/app1/etc").glob("*/app.env")).read_text()
    assert f"sslrootcert={tmp_path / 'n' / 'app1'}/etc/" in app_env and "sslmode=verify-full" in app_env
