"""A local Debian package mirror with exactly what a stack's nodes install at first boot
(the packages their user-data names, with every dependency the image lacks), so that
nodes booted with no internet run their user-data unchanged.

The packages come from Debian's archive through the image's own apt (the sources
debootstrap used), so the dependency set is computed against the tree each node starts
from. They collect in one pool per image; a package set once fetched is recorded, and a
later rehearsal with the same set touches no network. The index is ``apt-ftparchive``'s
flat repository (``deb [trusted=yes] http://ADDRESS/ ./``); the trust comes from the
node container's apt sources, which the rehearsal writes, never from the user-data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from halgen.host.debimage import Image
from halgen.host.overlay import Overlay
from halgen.host.processes import HostError


@dataclass(frozen=True)
class Mirror:
    path: Path  # the directory to serve over HTTP: this set's packages and their index
    fetched: dict[str, object]  # facts of the fetch that made this set (seconds, debs, megabytes)

    def source_line(self, url: str) -> str:
        return f"deb [trusted=yes] {url.rstrip('/')}/ ./\n"


def ensure_mirror(image: Image, packages: list[str], work: Path,
                  log: Callable[[str], None] = print) -> Mirror:
    """The mirror for ``packages`` on ``image``, fetching what the pool lacks first."""
    base = image.path.parent.parent / "mirrors" / image.path.name
    pool = base / "pool"
    wanted = sorted(set(packages))
    mirror = base / "sets" / hashlib.sha256(" ".join(wanted).encode()).hexdigest()[:16]
    if (mirror / "fetch.json").is_file():
        return Mirror(mirror, json.loads((mirror / "fetch.json").read_text()))
    pool.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"mirror: {len(wanted)} packages and what they need beyond the image, into {pool}")
    upstream = "-o Dir::Etc::SourceList=/etc/apt/upstream.list -o Dir::Etc::SourceParts=-"
    install = f"DEBIAN_FRONTEND=noninteractive apt-get -qq {upstream} --assume-yes install " + " ".join(wanted)
    with Overlay(image.root, work / "mirror-build") as root:
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        _chroot(root, f"apt-get -qq {upstream} update", "apt could not read Debian's archive")
        # Exactly the files first boot would fetch: what the pool has is copied, not fetched again.
        uris = _chroot(root, install + " --print-uris", "apt could not resolve the packages (is each name "
                       "one Debian 12 has?)")
        needed = [line.split()[1] for line in uris.splitlines() if line.startswith("'")]
        archives = root / "var/cache/apt/archives"
        for name in needed:
            if (pool / name).is_file():
                shutil.copy(pool / name, archives / name)
        _chroot(root, install + " --download-only", "apt could not fetch the packages")
        staging = mirror.with_name(mirror.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in needed:
            if not (pool / name).is_file():
                shutil.copy(archives / name, pool / name)
            os.link(pool / name, staging / name)
        index = root / "tmp/index"
        shutil.copytree(staging, index)
        _chroot(root, "cd /tmp/index && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release",
                "apt-ftparchive failed")
        for name in ("Packages", "Release"):
            shutil.copy(index / name, staging / name)
    facts = {"packages": wanted, "debs": len(needed), "seconds": round(time.monotonic() - started, 1),
             "megabytes": round(sum((pool / n).stat().st_size for n in needed) / 1e6, 1)}
    (staging / "fetch.json").write_text(json.dumps(facts, indent=2) + "\n")
    staging.rename(mirror)
    log(f"mirror: {facts['debs']} packages, {facts['megabytes']} MB in {facts['seconds']} s")
    return Mirror(mirror, facts)


def _chroot(root: Path, script: str, failure: str) -> str:
    result = subprocess.run(["chroot", str(root), "/bin/sh", "-ec", script], capture_output=True, text=True,
                            timeout=1800)
    if result.returncode != 0:
        raise HostError(f"mirror: {failure}:\n{result.stderr.strip()[-2000:]}")
    return result.stdout
