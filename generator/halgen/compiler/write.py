"""Write a rendered repo: into a staging directory beside DEST, check it, move it into place.

``render`` uses halgen's fast engine; ``new`` uses copier (so the repo can
later be updated with ``copier update``). Nothing is written at DEST until
the whole tree rendered and passed its checks.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from halgen.compiler import cloudinit, deploykey, resources, secrets, stackca
from halgen.compiler.answers import Answers
from halgen.compiler.engine import Blueprint, Output
from halgen.compiler.model import LINODE, Target, derive
from halgen.compiler.outputs import check_tree
from halgen.errors import Problem, RenderError

BUILD_DIR = "build"


def check_destination(dest: Path, force: bool,
                      way_out: str = "use --force to replace it; its secrets/ are kept") -> None:
    """``dest`` may be written: absent, an empty directory, or (``force``) any directory.
    ``way_out`` tells the user what to do instead, in the words of the calling command."""
    if dest.exists() and not dest.is_dir():
        raise RenderError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise RenderError(f"{dest}: directory is not empty; refusing to overwrite it ({way_out})")


# A check of a whole rendered tree from a layer above the compiler (the CLI passes
# halgen lint's file rules): the problems it finds; any one stops the write.
TreeCheck = Callable[[Path], list[Problem]]


def render(answers: Answers, dest: Path, force: bool = False, target: Target = LINODE,
           check: TreeCheck | None = None) -> Path:
    """Complete, valid answers -> a deployment repo at ``dest`` (replaced whole with ``force``,
    keeping its secrets).

    The answers file it writes records no blueprint source: a render is a
    compile, not a copier-managed copy (use ``new`` for that).
    """
    dest = dest.resolve()
    check_destination(dest, force)
    outputs = _render_blueprint("stack", answers, target)
    with staging_dir(dest) as staging:
        _write_tree(staging, outputs)
        verify(staging, answers, target, check)
        _keep_secrets(dest, staging)
        secrets.ensure(staging)
        move_into_place(staging, dest)
    return dest


def build(repo: Path, answers: Answers, target: Target = LINODE, renew_certs: bool = False) -> Path:
    """Write into ``repo/build`` (gitignored) the secret-bearing node files and, for
    each node, the pasteable user-data made from the repo's files as they are now
    (local edits included) plus those secrets: ``user-data/<node>.yaml`` for Cloud
    Manager and ``user-data/<node>.yaml.b64`` for the API. TLS certificates that are
    missing or due are issued first (all of them with ``renew_certs``)."""
    stack = derive(answers, target)
    certificates = stackca.ensure(repo, stack, renew=renew_certs)
    deploy_key = deploykey.ensure(repo, stack.project) if stack.deploy_key_apps else ""
    secret_files, documents = user_data(repo, answers, secrets.ensure(repo), target, certificates, deploy_key)
    outputs = list(secret_files)
    for node, text in documents.items():
        outputs.append((Path("user-data") / f"{node}.yaml", text, 0o600))
        outputs.append((Path("user-data") / f"{node}.yaml.b64", base64.b64encode(text.encode()).decode(), 0o600))
    out = repo / BUILD_DIR
    with staging_dir(out) as staging:
        _write_tree(staging, outputs)
        if out.exists():
            shutil.rmtree(out)  # build/ is halgen's own output, remade whole every time
        move_into_place(staging, out)
    return out


def user_data(repo: Path, answers: Answers, secret_values: dict[str, str], target: Target = LINODE,
              certificates: stackca.StackCertificates | None = None,
              deploy_key: str | None = None) -> tuple[list[Output], dict[str, str]]:
    """The secret-bearing node files (paths under build/) and every node's pasteable
    user-data, made from the repo's files as they are on disk (with stand-in
    certificates and deploy key of the real size when none are given). A document over Linode's
    limit, or a readable part that is missing or malformed, is a RenderError."""
    stack = derive(answers, target)
    tls = certificates or stackca.stand_ins(stack)
    key = deploy_key if deploy_key is not None else deploykey.stand_in()
    secret_files = [(path, content, 0o600) for path, content, _ in
                    _render_blueprint("secrets", answers, target,
                                      {"secrets": secret_values, "tls": tls, "deploy_key": key})]
    repo_files = _repo_files(repo)
    repo_files.update({str(Path(BUILD_DIR) / path): (content.encode(), mode) for path, content, mode in secret_files})
    documents = {}
    for node in stack.nodes:
        rel = f"nodes/{node.name}/{cloudinit.READABLE_FILE}"
        if rel not in repo_files:
            raise RenderError(f"{rel}: missing; it is the readable part of {node.name}'s user-data (copier update "
                              "restores it)")
        documents[node.name] = cloudinit.pasteable(stack, node, repo_files[rel][0].decode("utf-8"),
                                                   cloudinit.node_files(stack, node, repo_files), source=rel)
    return secret_files, documents


def _render_blueprint(name: str, answers: Answers, target: Target,
                      extra: dict[str, Any] | None = None) -> list[Output]:
    blueprint = Blueprint.of(resources.template_root(), None if name == "stack" else name)
    try:
        return list(blueprint.render(answers, target, extra))
    except TemplateError as err:
        raise RenderError(f"blueprint template error: {template_location(err)}{err}") from None


def _repo_files(repo: Path) -> dict[str, tuple[bytes, int]]:
    """A generated repo's node and app files as they are on disk, by relative path."""
    files = {}
    for top in ("nodes", "app"):
        for path in sorted((repo / top).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(repo))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return files


def _keep_secrets(old: Path, new: Path) -> None:
    """A forced re-render replaces the tree but never the stack's secrets area: passwords,
    the CA and certificates, the deploy key."""
    area = secrets.SECRETS_FILE.parent
    if (old / area).is_dir():
        shutil.copytree(old / area, new / area, symlinks=True)


def _write_tree(root: Path, outputs: list[Output]) -> None:
    # Each directory is made once, parents first: directory creation is the
    # slowest part of writing a large stack on a slow disk.
    for directory in sorted({parent for relpath, _, _ in outputs for parent in relpath.parents} - {Path(".")}):
        (root / directory).mkdir()
    for relpath, content, mode in outputs:
        target = root / relpath
        target.write_bytes(content.encode("utf-8"))
        target.chmod(mode)


def template_location(err: TemplateError) -> str:
    filename, lineno = getattr(err, "filename", None), getattr(err, "lineno", None)
    return f"{filename}:{lineno}: " if filename else ""


def verify(root: Path, answers: Answers, target: Target = LINODE, check: TreeCheck | None = None) -> None:
    """The checks every rendered tree passes before it is moved into place: nginx parses
    (crossplane), every node's user-data fits Linode's limit with secrets of their real
    length in it, and ``check`` (halgen lint's file rules, for a Linode render) finds nothing."""
    problems = check_tree(root)
    if not problems:
        user_data(root, answers, secrets.stand_ins(), target)
        if check is not None and not target.is_rehearsal:
            problems = check(root)
    if problems:
        raise RenderError("the rendered repo fails its own checks; nothing was written:\n"
                          + "\n".join(p.format() for p in problems))


@contextmanager
def staging_dir(dest: Path) -> Iterator[Path]:
    """A scratch directory beside ``dest`` (same file system, so the final rename is atomic)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.halgen-", dir=dest.parent))
    except OSError as err:
        raise RenderError(f"{dest}: cannot write there: {err.strerror or err}") from None
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging: Path, dest: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it 0700
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        staging.rename(dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.halgen-old-", dir=dest.parent))
    old.rmdir()
    dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
