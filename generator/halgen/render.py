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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from . import cloudinit, resources, secrets
from .checks import check_tree
from .cloudinit import UserDataTooLarge
from .engine import Blueprint
from .firewall import FirewallError
from .model import LINODE, Target, derive
from .problems import RenderError

BUILD_DIR = "build"


def check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise RenderError(f"{dest}: exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise RenderError(f"{dest}: directory is not empty; refusing to overwrite it (use --force to replace it)")


def render(answers: dict[str, Any], dest: Path, force: bool = False, target: Target = LINODE) -> Path:
    """Complete, valid answers -> a deployment repo at ``dest`` (replaced whole with ``force``,
    keeping its secrets).

    The answers file it writes records no blueprint source: a render is a
    compile, not a copier-managed copy (use ``new`` for that).
    """
    dest = dest.resolve()
    check_destination(dest, force)
    outputs = _render_blueprint("stack", answers, target)
    with _staging(dest) as staging:
        _write_tree(staging, outputs)
        _verify(staging)
        _keep_secrets(dest, staging)
        secrets.ensure(staging)
        _move_into_place(staging, dest)
    return dest


def build(repo: Path, answers: dict[str, Any], target: Target = LINODE) -> Path:
    """Write into ``repo/build`` (gitignored) the secret-bearing node files and, for
    each node, the pasteable user-data made from the repo's files as they are now
    (local edits included) plus those secrets: ``user-data/<node>.yaml`` for Cloud
    Manager and ``user-data/<node>.yaml.b64`` for the API."""
    values = secrets.ensure(repo)
    secret_files = [(path, content, 0o600) for path, content, _ in
                    _render_blueprint("secrets", answers, target, {"secrets": values})]
    stack = derive(answers, target)
    repo_files = _repo_files(repo)
    repo_files.update({str(Path(BUILD_DIR) / path): (content.encode(), mode) for path, content, mode in secret_files})
    user_data: list[tuple[Path, str, int]] = []
    for node in stack.nodes:
        try:
            text = cloudinit.document(stack, node, cloudinit.node_files(stack, node, repo_files), with_secrets=True)
        except UserDataTooLarge as err:
            raise RenderError(str(err)) from None
        user_data.append((Path("user-data") / f"{node.name}.yaml", text, 0o600))
        user_data.append((Path("user-data") / f"{node.name}.yaml.b64",
                          base64.b64encode(text.encode()).decode(), 0o600))
    out = repo / BUILD_DIR
    with _staging(out) as staging:
        _write_tree(staging, secret_files + user_data)
        if out.exists():
            shutil.rmtree(out)  # build/ is halgen's own output, remade whole every time
        _move_into_place(staging, out)
    return out


def _render_blueprint(name: str, answers: dict[str, Any], target: Target,
                      extra: dict[str, Any] | None = None) -> list[tuple[Path, str, int]]:
    blueprint = Blueprint(resources.template_root() / "blueprints" / name)
    try:
        return list(blueprint.render(answers, target, extra))
    except TemplateError as err:
        raise RenderError(f"blueprint template error: {_where(err)}{err}") from None
    except (UserDataTooLarge, FirewallError) as err:
        raise RenderError(str(err)) from None


def new(dest: Path, answers: dict[str, Any] | None, vcs_ref: str | None = None) -> Path:
    """Scaffold with copier from halgen's own blueprint (prompts unless answers are given)."""
    dest = dest.resolve()
    check_destination(dest, force=False)
    with _staging(dest) as staging:
        _copier_copy(resources.template_root(), staging, answers, vcs_ref=vcs_ref)
        _verify(staging)
        secrets.ensure(staging)
        _move_into_place(staging, dest)
    return dest


def _copier_copy(template: Path, staging: Path, answers: dict[str, Any] | None, vcs_ref: str | None = None) -> None:
    from copier import run_copy
    from copier.errors import CopierError

    try:
        run_copy(
            str(template),
            str(staging),
            data=answers or {},
            defaults=answers is not None,
            overwrite=True,
            quiet=True,
            unsafe=True,  # the blueprint loads halgen's own Jinja extension
            vcs_ref=vcs_ref,
        )
    except CopierError as err:
        raise RenderError(f"copier: {err}") from None
    except TemplateError as err:
        raise RenderError(f"blueprint template error: {_where(err)}{err}") from None


def _repo_files(repo: Path) -> dict[str, tuple[bytes, int]]:
    """A generated repo's node and app files as they are on disk, by relative path."""
    files = {}
    for top in ("nodes", "app"):
        for path in sorted((repo / top).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(repo))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return files


def _keep_secrets(old: Path, new: Path) -> None:
    """A forced re-render replaces the tree but never the stack's secrets."""
    source = old / secrets.SECRETS_FILE
    if source.is_file():
        (new / secrets.SECRETS_FILE).parent.mkdir(mode=0o700)
        shutil.copy2(source, new / secrets.SECRETS_FILE)


def _write_tree(root: Path, outputs: list[tuple[Path, str, int]]) -> None:
    # Each directory is made once, parents first: directory creation is the
    # slowest part of writing a large stack on a slow disk.
    for directory in sorted({parent for relpath, _, _ in outputs for parent in relpath.parents} - {Path(".")}):
        (root / directory).mkdir()
    for relpath, content, mode in outputs:
        target = root / relpath
        target.write_bytes(content.encode("utf-8"))
        target.chmod(mode)


def _where(err: TemplateError) -> str:
    filename, lineno = getattr(err, "filename", None), getattr(err, "lineno", None)
    return f"{filename}:{lineno}: " if filename else ""


def _verify(staging: Path) -> None:
    problems = check_tree(staging)
    if problems:
        raise RenderError("rendered output failed its checks:\n" + "\n".join(p.format() for p in problems))


@contextmanager
def _staging(dest: Path) -> Iterator[Path]:
    """A scratch directory beside ``dest`` (same file system, so the final rename is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.halgen-", dir=dest.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, dest: Path) -> None:
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
