"""Where copier takes halgen's blueprint from: a git repository with its release tags.

Run from a git checkout of halgen, that is the checkout. Installed from a wheel, halgen
carries the blueprint's history as a git bundle and keeps it, unpacked, in a cache
repository (``$HALGEN_CACHE``, else ``$XDG_CACHE_HOME/halgen``, else ``~/.cache/halgen``)
that every halgen version adds its releases to: a stack records that path as its source,
so ``copier update``, ``halgen scale`` and ``halgen status`` find both the release it was
made from and every newer one after halgen is upgraded."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from halgen import __version__
from halgen.compiler import resources
from halgen.journeys.copierrepo import JourneyError

BUNDLE = "blueprint.bundle"


def cache_dir() -> Path:
    if os.environ.get("HALGEN_CACHE"):
        return Path(os.environ["HALGEN_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "halgen"


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise JourneyError(f"git {' '.join(args[:2])}: {result.stderr.strip() or 'failed'}")
    return result.stdout.strip()


def blueprint_source() -> tuple[str, str | None]:
    """(copier source, git ref of this halgen's blueprint) for a new stack. From a checkout
    the ref is None: copier takes the newest release tag, else HEAD."""
    root = resources.template_root()
    if (root / ".git").exists():
        return str(root), None
    cache = sync_cache()
    return str(cache), _own_ref(cache)


def sync_cache() -> Path:
    """The cache repository, holding every release this and earlier halgens shipped."""
    bundle = resources.template_root() / BUNDLE
    if not bundle.is_file():
        raise JourneyError("this halgen was built without its blueprint history (not from a git checkout), so it "
                           "cannot make or update copier-managed stacks; install it from a wheel built in a git "
                           "checkout, or use 'halgen render'")
    repo = cache_dir() / "blueprint"
    if not (repo / ".git").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "--quiet", str(bundle), str(repo))
    else:
        _git("fetch", "--quiet", "--tags", "--force", str(bundle), f"+HEAD:refs/heads/halgen-{__version__}", cwd=repo)
    return repo


def _own_ref(repo: Path) -> str:
    """This halgen's release tag when the bundle has it, else the commit it was built from."""
    tag = f"v{__version__}"
    if _git("tag", "--list", tag, cwd=repo):
        return tag
    branch = f"halgen-{__version__}"
    return _git("rev-parse", branch if _git("branch", "--list", branch, cwd=repo) else "HEAD", cwd=repo)


def refresh_source(recorded: dict[str, object]) -> None:
    """Before copier reads a stack's recorded source: when that is the cache, add the
    releases this (perhaps newer) halgen ships, so the update finds them."""
    source = recorded.get("_src_path")
    if isinstance(source, str) and Path(source).resolve() == (cache_dir() / "blueprint").resolve():
        sync_cache()
