"""Where a node's files are in the repo, which includes lint may leave unread (the
secrets files `halgen build` writes, files Debian's packages install), and what
`halgen build` writes into the secrets files (from the secrets blueprint)."""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass

from halgen.lint.repo import Repo

PACKAGE_FILES = frozenset({
    "/etc/nginx/mime.types", "/etc/nginx/fastcgi_params", "/etc/nginx/fastcgi.conf", "/etc/nginx/proxy_params",
    "/etc/nginx/scgi_params", "/etc/nginx/uwsgi_params", "/etc/nginx/koi-utf", "/etc/nginx/koi-win",
    "/etc/nginx/win-utf", "/etc/nginx/snippets/fastcgi-php.conf", "/etc/nginx/snippets/snakeoil.conf",
    "/etc/letsencrypt/options-ssl-nginx.conf",
})


@dataclass(frozen=True)
class Unseen:
    """An include (or hba_file, aclfile...) naming a file lint cannot read."""

    file: str
    line: int
    directive: str
    target: str  # the path on the node


def split(rel: str) -> tuple[str, str]:
    """'nodes/db1/etc/x.conf' -> ('db1', '/etc/x.conf')."""
    _, node, rest = rel.split("/", 2)
    return node, "/" + rest


def on_node(path: str, base: str) -> str:
    """A path as the service resolves it: absolute, or relative to base."""
    return posixpath.normpath(posixpath.join(base, path))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A shell glob (as glob(3): '*' stays within one directory) as a regular expression."""
    parts = []
    for token in re.split(r"(\*|\?|\[[^]]*\])", pattern):
        if token == "*":
            parts.append("[^/]*")
        elif token == "?":
            parts.append("[^/]")
        elif token.startswith("[") and token.endswith("]") and len(token) > 2:
            parts.append("[" + token[1:-1].replace("!", "^", 1) + "]" if token[1] == "!" else token)
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def matches(repo: Repo, node: str, path: str) -> list[str]:
    """The node's repo files a path (maybe a glob) names, sorted as glob(3) sorts them."""
    if not is_glob(path):
        rel = f"nodes/{node}{path}"
        return [rel] if repo.exists(rel) else []
    compiled = _glob_regex(f"nodes/{node}{path}")
    return sorted(f for f in repo.node_files(node, ".*") if compiled.fullmatch(f))


@functools.cache
def _build_written() -> tuple[tuple[re.Pattern[str], str], ...]:
    """The node paths of the secret-bearing files `halgen build` writes (from the secrets
    blueprint: blueprints/secrets/nodes/<role>/<path>.jinja, names templated), each with
    its template's text, every {{ value }} replaced by a stand-in word."""
    from halgen.compiler import resources

    try:
        root = resources.template_root() / "blueprints" / "secrets" / "nodes"
    except FileNotFoundError:
        return ()
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(root).parts[1:]  # below the role directory
        regex = "/" + "/".join(".+" if "{" in p else re.escape(p.removesuffix(".jinja")) for p in parts)
        text = re.sub(r"\{\{.*?\}\}", "templated", path.read_text(encoding="utf-8", errors="replace"))
        found.append((re.compile(regex), re.sub(r"\{[%#].*?[%#]\}", "", text, flags=re.S)))
    return tuple(found)


def build_written(path: str) -> bool:
    """Whether `halgen build` writes this node path (a secrets file, never in git)."""
    return build_template(path) is not None


def build_template(path: str) -> str | None:
    """What `halgen build` writes to this node path, values left out; None if it writes nothing there."""
    return next((text for regex, text in _build_written() if regex.fullmatch(path)), None)


def designed(pattern: str) -> bool:
    """Whether any file `halgen build` writes has a line matching pattern: what this halgen's
    design puts in the secrets files (Sentinel passwords, say)."""
    compiled = re.compile(pattern, re.M)
    return any(compiled.search(text) for _, text in _build_written())


def unseen_ok(path: str) -> bool:
    return build_written(path) or path in PACKAGE_FILES


# Directories Debian's packages create empty, for the admin's own files.
EMPTY_PACKAGE_DIRS = frozenset({"/etc/nginx/conf.d", "/etc/ssh/sshd_config.d"})


def empty_glob_ok(repo: Repo, node: str, pattern: str) -> bool:
    """A glob that matches nothing is fine in a directory the tree holds or Debian leaves
    empty; anywhere else it picks up whatever the node has there, unseen."""
    if not is_glob(pattern):
        return False
    directory = posixpath.dirname(pattern)
    if is_glob(directory):
        return False
    return directory in EMPTY_PACKAGE_DIRS or bool(repo.node_files(node, re.escape(directory.lstrip("/")) + "/.+"))
