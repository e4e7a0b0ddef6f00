"""The generated repo's secrets: made once, kept forever, never tracked.

``secrets/secrets.env`` (gitignored) holds one random password per purpose.
Tracked files only name the file a secret is read from; ``halgen build``
renders the secret-bearing files (blueprints/secrets/) into ``build/``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets as random_source
from pathlib import Path

from halgen.errors import HalgenError
from halgen.formats import envfile

SECRETS_FILE = Path("secrets") / "secrets.env"
# Random secrets halgen makes: name -> what it protects (the file's header explains each).
# One per purpose and tier, so that each node gets only what it uses.
GENERATED = {
    "PG_REPLICATION_PASSWORD": "PostgreSQL role used by replicas to stream WAL",
    "PG_APP_PASSWORD": "PostgreSQL role of the application",
    "PG_REWIND_PASSWORD": "PostgreSQL role Patroni runs pg_rewind with, to turn a failed primary into a replica",
    "PATRONI_API_PASSWORD": "Patroni's REST API: switchover, failover and restarts (patronictl) need it",
    "PG_BACKUP_CIPHER_PASS": "encrypts the PostgreSQL backups (pgBackRest): without it none can be restored",
    "REDIS_APP_PASSWORD": "the app's Redis and Sentinel user",
    "REDIS_REPLICATION_PASSWORD": "Redis user replicas sync with (masteruser/masterauth)",
    "REDIS_SENTINEL_PASSWORD": "Redis user the Sentinels monitor and reconfigure Redis with (auth-user/auth-pass)",
    "REDIS_SNAPSHOT_PASSWORD": "Redis user the backup job takes snapshots with",
    "REDIS_ADMIN_PASSWORD": "Redis user for operators (no node holds it, only its hash)",
    "SENTINEL_PASSWORD": "the Sentinels' own password: between Sentinels and for operators",
    "REDIS_BACKUP_PASSWORD": "encrypts the Redis backups (restic repository): without it none can be restored",
    "PG_MONITOR_PASSWORD": "PostgreSQL role the monitoring node's exporters log in with (pg_monitor: statistics only)",
    "REDIS_MONITOR_PASSWORD": "Redis and Sentinel user the monitoring node's exporter logs in with (INFO and the like)",
    "ALERT_WEBHOOK_TOKEN": "Bearer token Alertmanager sends with each webhook post (alert_webhook_url)",
}
# Secrets only the user can supply: Object Storage access keys made in Cloud Manager,
# one pair per tier, each limited to the backup bucket.
PROVIDED = {
    "OBJ_PG_ACCESS_KEY": "Object Storage access key for the PostgreSQL backups (read/write on the backup bucket only)",
    "OBJ_PG_SECRET_KEY": "its secret key",
    "OBJ_REDIS_ACCESS_KEY": "Object Storage access key for the Redis backups (read/write on the backup bucket only)",
    "OBJ_REDIS_SECRET_KEY": "its secret key",
}
# Secrets only the user can supply and that may stay empty (the feature is then off).
OPTIONAL = {
    "ALERT_SMTP_PASSWORD": "password of alert_smtp_user at alert_smtp_relay (empty: no login)",
    "ALERT_DEADMAN_URL": "https URL of an external dead man's switch (healthchecks.io and the like) the monitoring "
                         "node pings every minute while alerting works: silence means alerting is down (empty: none)",
}
NAMES = {**GENERATED, **PROVIDED, **OPTIONAL}
# Names of earlier versions -> the names that now hold their values (see ensure()).
RENAMED = {
    # It encrypts the pgBackRest backups already in the bucket.
    "BACKUP_CIPHER_PASS": ("PG_BACKUP_CIPHER_PASS",),
    # The single key pair keeps serving both tiers until the user replaces the Redis pair.
    "OBJ_ACCESS_KEY": ("OBJ_PG_ACCESS_KEY", "OBJ_REDIS_ACCESS_KEY"),
    "OBJ_SECRET_KEY": ("OBJ_PG_SECRET_KEY", "OBJ_REDIS_SECRET_KEY"),
    # The app's password stays the app's.
    "REDIS_PASSWORD": ("REDIS_APP_PASSWORD",),
}
# Values the user typed in, now or under an earlier name: access keys, not halgen's tokens.
_USER_SUPPLIED = set(PROVIDED) | {old for old, new in RENAMED.items() if new[0] in PROVIDED}
# What an optional secret may hold: no quotes, spaces or backslashes (files quote it in '').
_OPTIONAL_VALUE = {
    "ALERT_SMTP_PASSWORD": re.compile(r"[!#-&(-\[\]-~]{0,200}"),
    "ALERT_DEADMAN_URL": re.compile(r"(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%!$&()*+,;=:@/-]*)?"
                                    r"(\?[A-Za-z0-9._~%!$&()*+,;=:@/?-]*)?)?"),
}
TOKEN_BYTES = 24  # 192 bits; URL-safe base64, so safe unquoted in shell, conf files and DSNs
_GENERATED_VALUE = re.compile(r"[A-Za-z0-9_-]{22,}")
_PROVIDED_VALUE = re.compile(r"[A-Za-z0-9/+=_-]{0,128}")
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class SecretsError(HalgenError):
    pass


def new_secret() -> str:
    return random_source.token_urlsafe(TOKEN_BYTES)


# Object Storage keys as Linode issues them: 20 and 40 characters.
_PROVIDED_LENGTHS = {"OBJ_PG_ACCESS_KEY": 20, "OBJ_PG_SECRET_KEY": 40, "OBJ_REDIS_ACCESS_KEY": 20,
                     "OBJ_REDIS_SECRET_KEY": 40}


def stand_ins() -> dict[str, str]:
    """Values of every secret's length that look as random as the real ones but are fixed,
    so that a render can measure each node's user-data (gzip'd) before any secret exists."""
    length = {name: len(new_secret()) for name in GENERATED} | _PROVIDED_LENGTHS | {name: 0 for name in OPTIONAL}
    return {name: base64.urlsafe_b64encode(hashlib.sha512(name.encode()).digest()).decode()[:length[name]]
            for name in NAMES}


def read(repo: Path) -> dict[str, str]:
    path = repo / SECRETS_FILE
    if not path.exists():
        return {}
    settings, errors = envfile.parse(path.read_text(encoding="utf-8"))
    for number, message in errors:
        raise SecretsError(f"{path}:{number}: {message}")
    for setting in settings.values():
        name, value, number = setting.name, setting.value, setting.line
        if not _NAME.fullmatch(name):
            raise SecretsError(f"{path}:{number}: {name}: names are upper-case letters, digits and _")
        if name in _OPTIONAL_VALUE:
            if not _OPTIONAL_VALUE[name].fullmatch(value):
                expected = "an https:// URL" if name.endswith("_URL") else "no spaces, quotes or backslashes"
                raise SecretsError(f"{path}:{number}: {name}: {expected} (or empty)")
        elif name in _USER_SUPPLIED and not _PROVIDED_VALUE.fullmatch(value):
            raise SecretsError(f"{path}:{number}: {name}: letters, digits and / + = _ - only")
        elif name not in _USER_SUPPLIED and not _GENERATED_VALUE.fullmatch(value):
            raise SecretsError(f"{path}:{number}: {name}: expected 22+ URL-safe characters (letters, digits, _ and -)")
    return {name: setting.value for name, setting in settings.items()}


def missing_provided(values: dict[str, str]) -> list[str]:
    """Secrets the user still has to fill in."""
    return [name for name in PROVIDED if not values.get(name)]


def ensure(repo: Path) -> dict[str, str]:
    """Create missing secrets; keep every existing one. Returns them all."""
    values = read(repo)
    migrated = migrate(values)
    missing = [name for name in NAMES if name not in migrated]
    migrated.update({name: new_secret() if name in GENERATED else "" for name in missing})
    if migrated != values:
        write(repo, migrated)
    return migrated


def migrate(values: dict[str, str]) -> dict[str, str]:
    """Carry the values of earlier names over to the names that replaced them, never
    overwriting a value already set; the old names are dropped."""
    result = {name: value for name, value in values.items() if name not in RENAMED}
    for old, news in RENAMED.items():
        for new in news:
            if values.get(old) and not result.get(new):
                result[new] = values[old]
    return result


def write(repo: Path, values: dict[str, str]) -> None:
    path = repo / SECRETS_FILE
    path.parent.mkdir(mode=0o700, exist_ok=True)
    lines = ["# Secrets of this stack. Never commit this file (it is in .gitignore), but keep a copy",
             "# somewhere safe: PG_BACKUP_CIPHER_PASS and REDIS_BACKUP_PASSWORD are needed to restore any backup.",
             "# Rotate one: replace its value, run 'halgen build', deploy the files, then see README.md.",
             "# Fill in the ones marked (you provide) before the first backup."]
    provider = {**{name: " (you provide)" for name in PROVIDED},
                **{name: " (optional, you provide)" for name in OPTIONAL}}
    lines += [f"# {name}: {NAMES[name]}{provider.get(name, '')}" for name in NAMES]
    lines += [f"{name}={values[name]}" for name in sorted(values)]
    write_private(path, "\n".join(lines) + "\n")


def write_private(path: Path, text: str) -> None:
    """Owner-only, replaced atomically: a crash never leaves half a secret or key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
