"""The app servers' read-only deploy key, for an app_repo reached over SSH.

``halgen build`` keeps it in ``secrets/deploy-key`` (OpenSSH Ed25519, gitignored)
with ``secrets/deploy-key.pub`` beside it: add the public key to the git host as a
read-only deploy key. Only the app servers' built user-data carries the private key;
they trust no git host key but the answers' ``app_repo_host_keys``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from halgen.compiler.secrets import write_private
from halgen.errors import HalgenError

DEPLOY_KEY = Path("secrets") / "deploy-key"
PUBLIC_SUFFIX = ".pub"


class DeployKeyError(HalgenError):
    pass


def _openssh(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def public_line(key: Ed25519PrivateKey, comment: str) -> str:
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode()} {comment}\n"


def ensure(repo: Path, project: str) -> str:
    """The private key (OpenSSH text), made now if the repo has none."""
    path = repo / DEPLOY_KEY
    if path.exists():
        text = path.read_text(encoding="utf-8")
        try:
            key = serialization.load_ssh_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as err:
            raise DeployKeyError(f"{DEPLOY_KEY}: not an unencrypted OpenSSH private key ({err}); delete it and "
                                 "run 'halgen build' again for a new one") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise DeployKeyError(f"{DEPLOY_KEY}: not an Ed25519 key; delete it for a new one")
        return text
    key = Ed25519PrivateKey.generate()
    text = _openssh(key)
    write_private(path, text)
    path.with_name(path.name + PUBLIC_SUFFIX).write_text(public_line(key, f"{project}-app-servers (read-only)"),
                                                         encoding="utf-8")
    return text


def stand_in() -> str:
    """A fixed key of the real size, so that a render can measure user-data. Never written."""
    seed = hashlib.sha256(b"halgen stand-in deploy key").digest()
    return _openssh(Ed25519PrivateKey.from_private_bytes(seed))
