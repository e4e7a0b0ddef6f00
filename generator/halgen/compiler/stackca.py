"""The stack's own certificate authority: TLS between the nodes inside the VPC.

``halgen build`` keeps a CA and one certificate per TLS server node (PostgreSQL,
Redis, Sentinel) in ``secrets/tls/`` (gitignored, beside secrets.env). Nodes get
their own key and certificate and the CA certificate; the CA key never leaves
the admin's machine. Every build re-issues a node certificate that is missing,
expires within ``RENEW_BEFORE``, names other addresses than the node has now, or
was not signed by the current CA; ``renew=True`` (``halgen build --renew-certs``)
re-issues them all. Unchanged certificates are reused, so builds are repeatable.

Keys are ECDSA P-256: PostgreSQL, libpq (hence DBD::Pg), pgBackRest and Redis all
take it through OpenSSL, where Ed25519 support in TLS clients is uneven.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from halgen.compiler.model import Node, Stack
from halgen.compiler.secrets import write_private
from halgen.errors import HalgenError

TLS_DIR = Path("secrets") / "tls"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
CA_VALIDITY = timedelta(days=3650)
NODE_VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=5)  # a node whose clock is a little behind still accepts a fresh certificate
_CURVE = ec.SECP256R1()
_HASH = hashes.SHA256()


class CertificateError(HalgenError):
    pass


@dataclass(frozen=True)
class NodeCertificate:
    """One node's TLS identity, PEM-encoded: what the secrets blueprint writes onto it."""

    cert: str
    key: str


@dataclass(frozen=True)
class StackCertificates:
    """The CA certificate every TLS client trusts, and each TLS server node's identity.
    Templates use ``tls.ca_cert`` and ``tls.nodes[n.name].cert`` / ``.key``."""

    ca_cert: str
    nodes: dict[str, NodeCertificate]


def ensure(repo: Path, stack: Stack, renew: bool = False, now: datetime | None = None) -> StackCertificates:
    """The repo's CA (made on first use) and a current certificate for every node of
    ``stack.tls_servers``, issuing what is missing or due (all of them with ``renew``)."""
    now = now or datetime.now(UTC)
    directory = repo / TLS_DIR
    ca_cert, ca_key = _load_or_make_ca(directory, stack.project, now)
    nodes = {}
    for node in stack.tls_servers:
        cert_path, key_path = directory / f"{node.name}.crt", directory / f"{node.name}.key"
        current = None if renew else _read_current(cert_path, key_path, ca_cert, node, now)
        if current is None:
            key = ec.generate_private_key(_CURVE)
            cert = _issue(node, key, ca_cert, ca_key, now, _random_serial())
            current = _pem_pair(cert, key)
            write_private(key_path, current.key)
            write_private(cert_path, current.cert)
        nodes[node.name] = current
    return StackCertificates(ca_cert=_cert_pem(ca_cert), nodes=nodes)


def stand_ins(stack: Stack) -> StackCertificates:
    """Fixed certificates of the real shape and size, so that a render can measure each
    node's user-data before any real one exists. Never written anywhere."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ca_key = _fixed_key("stand-in CA")
    ca_cert = _make_ca_cert(stack.project, ca_key, when, _fixed_serial("stand-in CA"))
    nodes = {}
    for node in stack.tls_servers:
        key = _fixed_key(f"stand-in {node.name}")
        nodes[node.name] = _pem_pair(_issue(node, key, ca_cert, ca_key, when, _fixed_serial(node.name)), key)
    return StackCertificates(ca_cert=_cert_pem(ca_cert), nodes=nodes)


def subject_alt_names(node: Node) -> list[x509.GeneralName]:
    """What a client may call the node: its VPC address (what the stack's configs use) and host name."""
    return [x509.IPAddress(ipaddress.ip_address(node.address)), x509.DNSName(node.hostname)]


# --- the CA -------------------------------------------------------------------------

def _load_or_make_ca(directory: Path, project: str,
                     now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    present = [p.exists() for p in (cert_path, key_path)]
    if all(present):
        cert = _load_cert(cert_path)
        key = _load_key(key_path)
        if cert.public_key() != key.public_key():
            raise CertificateError(f"{key_path}: is not the key of {cert_path}")
        if cert.not_valid_after_utc <= now:
            raise CertificateError(f"{cert_path}: the stack's CA expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                                   f"move {directory} aside and run 'halgen build --renew-certs' for a new one, "
                                   "then install the new files on every node")
        return cert, key
    if any(present):
        missing = cert_path if not present[0] else key_path
        raise CertificateError(f"{missing}: missing, but its partner is there; restore it from your copy of "
                               f"secrets/ (or move {directory} aside for a new CA and reinstall every node)")
    key = ec.generate_private_key(_CURVE)
    cert = _make_ca_cert(project, key, now, _random_serial())
    write_private(key_path, _key_pem(key))
    write_private(cert_path, _cert_pem(cert))
    return cert, key


def _make_ca_cert(project: str, key: ec.EllipticCurvePrivateKey, now: datetime, serial: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{project} stack CA")])
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(serial)
               .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_VALIDITY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return _sign(builder, key)


# --- node certificates -----------------------------------------------------------------

def _issue(node: Node, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
           ca_key: ec.EllipticCurvePrivateKey, now: datetime, serial: int) -> x509.Certificate:
    # Never valid beyond the CA: a client would reject the chain then anyway.
    not_after = min(now + NODE_VALIDITY, ca_cert.not_valid_after_utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node.hostname)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(serial)
               .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               # Server and client: Redis and Sentinel replicas present theirs when they connect.
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.SubjectAlternativeName(subject_alt_names(node)), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    return _sign(builder, ca_key)


def _read_current(cert_path: Path, key_path: Path, ca_cert: x509.Certificate, node: Node,
                  now: datetime) -> NodeCertificate | None:
    """The node's stored certificate if it can stay: else None (it is re-issued)."""
    if not (cert_path.exists() and key_path.exists()):
        return None
    cert, key = _load_cert(cert_path), _load_key(key_path)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return None
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    due = cert.not_valid_after_utc - RENEW_BEFORE <= now
    if due or cert.public_key() != key.public_key() or set(names) != set(subject_alt_names(node)):
        return None
    return _pem_pair(cert, key)


# --- encoding and files -------------------------------------------------------------------

def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    # RFC 6979 signatures: the stand-ins come out byte-identical on every run.
    return builder.sign(key, _HASH, ecdsa_deterministic=True)


def _random_serial() -> int:
    return x509.random_serial_number()


def _fixed_key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(hashlib.sha256(label.encode()).digest()) % (2**255), _CURVE)


def _fixed_serial(label: str) -> int:
    # As long as a random one: 159 bits.
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:20]) >> 1


def _pem_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> NodeCertificate:
    return NodeCertificate(cert=_cert_pem(cert), key=_key_pem(key))


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as err:
        raise CertificateError(f"{path}: not a PEM certificate ({err})") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise CertificateError(f"{path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _CURVE.name:
        raise CertificateError(f"{path}: expected an EC P-256 key")
    return key
