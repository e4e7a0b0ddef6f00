"""Per-node cloud-init user-data: one #cloud-config document a user pastes into
Linode's User Data field, carrying the node's files exactly as they are in the repo.

The repo tracks only the readable part of each document (``readable``: users,
packages, the first-boot commands) as ``nodes/<node>/cloud-init.yaml``. ``halgen
build`` makes the pasteable document from it (``pasteable``): the node's files
travel as one tar, xz-compressed and base64'd in a single write_files entry
(encoding b64) - compressing them together keeps a database node under Linode's
16 KiB limit where per-file encoding would not, and xz (LZMA2 tuned for text) is ~6 %
smaller than cloud-init's own gzip (gz+b64). The archive travels as base85 text (5
characters per 4 bytes, where cloud-init's own b64 takes 5.33: ~900 bytes more room on
a database node) in a literal block, which holds any of its characters; Python, which
every cloud-init node has, decodes it and hands the tar to tar. The first-boot script
(itself one of the node's files) then configures the node.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import io
import json
import lzma
import re
import tarfile
from dataclasses import dataclass

from halgen.compiler.model import Node, Stack
from halgen.errors import RenderError

USER_DATA_LIMIT = 16384  # bytes as pasted (Linode's metadata service)
READABLE_FILE = "cloud-init.yaml"  # nodes/<node>/cloud-init.yaml: the readable part of its user-data
NOT_ON_NODE = ("NODE.md", READABLE_FILE)  # repo documentation, not node files

# (path pattern on the node, owner, group, mode); the first match wins, else root:root and the file's mode.
OWNERSHIP = [
    ("/var/lib/postgresql/.pgpass", "postgres", "postgres", 0o600),
    ("/etc/pgbackrest/conf.d/*", "postgres", "postgres", 0o600),
    ("/etc/pgbackrest/*", "postgres", "postgres", None),
    ("/etc/postgresql/*", "postgres", "postgres", None),
    ("/etc/patroni/*", "postgres", "postgres", None),
    ("/etc/etcd/*", "etcd", "etcd", None),
    ("/etc/redis/*secrets.conf", "redis", "redis", 0o600),
    ("/etc/redis/*", "redis", "redis", None),
    ("/etc/*/app-secrets.env", "root", "{app_user}", 0o640),
    ("/etc/*/deploy-key", "{app_user}", "{app_user}", 0o400),  # git runs as the app user
    ("/etc/*/*secrets.env", "root", "root", 0o600),
    ("/etc/*/tls/ca.crt", "root", "root", 0o644),  # the stack CA's certificate: public, read by every client
    ("/etc/prometheus/alert-*", "prometheus", "prometheus", 0o400),  # Alertmanager's secrets (files it reads)
]

# Distribution releases that ship a PostgreSQL major version themselves.
DISTRO_POSTGRES = {"linode/debian12": 15, "linode/ubuntu22.04": 14, "linode/ubuntu24.04": 16}
PGDG_KEY_ID = "B97B0AFCAA1A47F044F244A07FCC7D46ACCC4CF8"


class UserDataTooLarge(RenderError):
    """A node's user-data exceeds what Linode's metadata service accepts."""


@dataclass(frozen=True)
class NodeFile:
    path: str  # absolute path on the node
    content: bytes
    mode: int


def node_files(stack: Stack, node: Node, rendered: dict[str, tuple[bytes, int]]) -> list[NodeFile]:
    """The files a node gets, from a repo's files by relative path (``nodes/<node>/...``,
    ``app/...``; a build adds ``build/nodes/<node>/...``)."""
    own = (f"nodes/{node.name}/", f"build/nodes/{node.name}/")
    ships_app = node.role == "app" and not stack.a.app_repo
    files: dict[str, NodeFile] = {}
    for relpath, (content, mode) in sorted(rendered.items()):
        if relpath.startswith(own):
            inside = relpath.split("/", 3 if relpath.startswith("build/") else 2)[-1]
            if inside.rsplit("/", 1)[-1] in NOT_ON_NODE:
                continue
            path = "/" + inside
        elif ships_app and relpath.startswith("app/"):
            path = f"{stack.paths.app_root}/releases/initial/" + relpath[len("app/"):]
        else:
            continue
        files[path] = NodeFile(path, content, mode)
    return [files[p] for p in sorted(files)]


def _owner(stack: Stack, path: str, mode: int) -> tuple[str, str, int]:
    for pattern, owner, group, forced in OWNERSHIP:
        if fnmatch.fnmatch(path, pattern):
            return (owner.format(app_user=stack.a.app_user), group.format(app_user=stack.a.app_user),
                    forced if forced is not None else mode)
    return "root", "root", mode


def pack(stack: Stack, files: list[NodeFile]) -> bytes:
    """A reproducible tar of the files (fixed times, sorted, owners by name)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in files:
            owner, group, mode = _owner(stack, f.path, f.mode)
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(f.content), mode, 0
            info.uname, info.gname = owner, group
            tar.addfile(info, io.BytesIO(f.content))
    return buffer.getvalue()


def packages(stack: Stack, node: Node) -> list[str]:
    a = stack.a
    common = ["ufw", "fail2ban", "unattended-upgrades", "ca-certificates"]
    role = {
        "lb": ["haproxy", "nginx"] + (["certbot"] if a.lb_tls else []),
        # libredis-perl only recommends IO::Socket::SSL, which it needs for Redis over TLS.
        "app": [a.app_server, "libplack-perl", "libdbd-pg-perl", "libredis-perl", "curl"]
               + (["libio-socket-ssl-perl"] if a.vpc_tls else [])
               # an app from git may bring a cpanfile: its requirements come from Debian, else CPAN
               + (["git", "libmodule-cpanfile-perl", "cpanminus", "make"] if a.app_repo else []),
        "db": [f"postgresql-{a.pg_version}", "pgbackrest"] + (["patroni", "curl"] if node.patroni else []),
        "redis": ["redis-server", "redis-tools", "restic"],
        "mon": ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter", "prometheus-postgres-exporter",
                "prometheus-redis-exporter", "curl"],
    }[node.role]
    if stack.mons:
        # Without the collectors it recommends: their smartctl, nvme-cli and ipmitool add units that fail on
        # a virtual machine (a failed unit is an alert) and measure no disk or sensor a Linode has.
        role += ["prometheus-node-exporter", "prometheus-node-exporter-collectors-"]
        role += ["prometheus-nginx-exporter", "mtail"] if node.role == "lb" else []
    return (common + role + (["redis-sentinel"] if node.sentinel else [])
            + (["etcd-server", "etcd-client"] if node.etcd else []))


def payload_path(stack: Stack) -> str:
    return f"/var/lib/{stack.project}/node-files.b85"


def unpack_command(stack: Stack) -> str:
    """Python's one line that decodes the payload and extracts it with tar (owners by name,
    modes kept); a failure at any step fails the command."""
    return (f"import base64,lzma,subprocess as s;s.run('tar -xp --same-owner -C /'.split(),input=lzma.decompress("
            f"base64.b85decode(open('{payload_path(stack)}','rb').read().strip())),check=True)")


# LZMA2 at its strongest, literal context 3 bits, no position bits: best on text (measured).
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 3, "lp": 0, "pb": 0}]


@functools.lru_cache(maxsize=32)  # a build renders each node's payload several times (verify, size checks)
def compress(tar: bytes) -> bytes:
    return lzma.compress(tar, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, filters=XZ_FILTERS)


def readable(stack: Stack, node: Node) -> str:
    """The tracked part of a node's user-data (``nodes/<node>/cloud-init.yaml``): users,
    packages and the first-boot commands, without the node's files. Keys that equal
    cloud-init's defaults are left out to save room."""
    a = stack.a
    q = json.dumps  # a JSON string is a YAML string: safe quoting for every value
    lines = [
        "#cloud-config",
        f"# {node.hostname}: {node.role_title}{' + Sentinel' if node.sentinel else ''} of stack {stack.project}, "
        f"halgen {stack.halgen_version}.",
        f"# The readable part of {node.name}'s user-data. 'halgen build' adds the node's files and secrets",
        f"# (write_files) and writes the pasteable document to build/user-data/{node.name}.yaml.",
        f"hostname: {node.hostname}",
        "preserve_hostname: false",
        "disable_root: true",
        "ssh_pwauth: false",
        "package_update: true",
        "package_upgrade: true",
        "packages: [" + ", ".join(packages(stack, node)) + "]",
    ]
    if node.role == "db" and DISTRO_POSTGRES.get(a.image) != a.pg_version:
        lines += [
            "apt:",
            "  sources:",
            "    pgdg:",
            '      source: "deb http://apt.postgresql.org/pub/repos/apt $RELEASE-pgdg main"',
            f"      keyid: {PGDG_KEY_ID}",
        ]
    lines.append("users:")
    for admin in a.admins:
        lines += [
            f"- name: {admin.name}",
            "  groups: [sudo]",
            "  shell: /bin/bash",
            '  sudo: "ALL=(ALL) NOPASSWD:ALL"',
            "  lock_passwd: true",
            "  ssh_authorized_keys:",
            *[f"  - {q(key)}" for key in admin.ssh_keys],
        ]
    lines.append("runcmd:")
    if node.role == "app":
        user = a.app_user
        lines.append(f"- [useradd, --system, --home-dir, {stack.paths.app_root}, --shell, /usr/sbin/nologin, {user}]")
    lines += [
        f"- [python3, -c, {q(unpack_command(stack))}]",
        f"- [rm, -f, {payload_path(stack)}]",
        f"- [{stack.paths.sbin}/{stack.project}-first-boot]",
    ]
    return "\n".join(lines) + "\n"


_WRITE_FILES = re.compile(r"^write_files\s*:", re.M)
BUILT_NOTE = "# Built by 'halgen build' and holds secrets: paste it into Linode's User Data field, never commit it."


def pasteable(stack: Stack, node: Node, readable_text: str, files: list[NodeFile], source: str) -> str:
    """The document a user pastes: the node's readable part (``source``, as it is in the
    repo, local edits included) plus one write_files entry carrying its files."""
    if not readable_text.startswith("#cloud-config\n"):
        raise RenderError(f"{source}: must start with a '#cloud-config' line (cloud-init ignores it otherwise)")
    if _WRITE_FILES.search(readable_text):
        raise RenderError(f"{source}: has its own write_files; halgen adds that key (it carries the node's files): "
                          f"put extra files under nodes/{node.name}/ instead")
    payload = base64.b85encode(compress(pack(stack, files))).decode()
    head, body = readable_text.split("\n", 1)
    text = "\n".join([
        head,
        BUILT_NOTE,
        body.rstrip("\n"),
        "write_files:",
        f"- path: {payload_path(stack)}",
        "  permissions: '0600'",
        "  content: |-",
        f"    {payload}",
    ]) + "\n"
    size = len(text.encode())
    # Linode's limit; a rehearsal's documents carry its long path prefixes and go to no Linode.
    if size > USER_DATA_LIMIT and not stack.target.is_rehearsal:
        raise UserDataTooLarge(f"{node.name}: cloud-init user-data is {size} bytes; Linode accepts at most "
                               f"{USER_DATA_LIMIT}")
    return text


def unpack(text: str) -> dict[str, tuple[bytes, str, str, int]]:
    """Decode a built document's files: path -> (content, owner, group, mode)."""
    lines = text.splitlines()
    payload = lines[lines.index("  content: |-") + 1].strip()
    raw = lzma.decompress(base64.b85decode(payload))
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            assert data is not None
            out["/" + member.name] = (data.read(), member.uname, member.gname, member.mode)
    return out
