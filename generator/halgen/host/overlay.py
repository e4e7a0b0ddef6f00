"""A writable copy of a root tree that costs nothing until written: an overlayfs mount with
the tree as its read-only lower layer, so many node containers share one cached image."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from halgen.host.processes import HostError


class Overlay:
    """``with Overlay(lower, work) as root:`` mounts at ``work/root``; leaving unmounts it
    and removes ``work`` (the written layer) unless ``keep``."""

    def __init__(self, lower: Path, work: Path, keep: bool = False) -> None:
        self.lower, self.work, self.keep = lower, work, keep
        self.root = work / "root"

    def mount(self) -> Path:
        shutil.rmtree(self.work, ignore_errors=True)
        for name in ("upper", "work", "root"):
            (self.work / name).mkdir(parents=True)
        options = f"lowerdir={self.lower},upperdir={self.work / 'upper'},workdir={self.work / 'work'}"
        result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise HostError(f"could not mount an overlay of {self.lower} at {self.root}: {result.stderr.strip()}")
        return self.root

    def unmount(self) -> None:
        subprocess.run(["umount", "--lazy", str(self.root)], capture_output=True)
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Path:
        return self.mount()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.unmount()
