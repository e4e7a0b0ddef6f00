"""Wheel build hook: ship the blueprint's release history with halgen.

A stack made by a wheel-installed halgen records where its blueprint came from, and
``copier update`` needs that source to be a git repository holding the stack's release
and the newer ones. The wheel carries this repository's history as a git bundle
(``halgen/_bundled/blueprint.bundle``); halgen unpacks it into a cache on first use
(halgen.journeys.source). Built outside a git checkout (from an sdist), the wheel has
no bundle and halgen says so when an update journey needs it.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class BlueprintHistoryHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "blueprint-history"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":  # an editable install is the checkout itself
            return
        root = Path(self.root)
        bundle = self._bundle(root)
        if bundle is None:
            self.app.display_warning("no git checkout and no blueprint.bundle: the wheel carries no blueprint history")
            return
        # The sdist carries the bundle at its root, so that a wheel built from it (python -m build) has it too.
        target = "blueprint.bundle" if self.target_name == "sdist" else "halgen/_bundled/blueprint.bundle"
        build_data["force_include"][str(bundle)] = target

    @staticmethod
    def _bundle(root: Path) -> Path | None:
        inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
        if inside.returncode == 0 and inside.stdout.strip() == "true":
            bundle = Path(tempfile.mkdtemp(prefix="halgen-bundle-")) / "blueprint.bundle"
            subprocess.run(["git", "bundle", "create", str(bundle), "HEAD", "--tags"], cwd=root, check=True,
                           capture_output=True)
            return bundle
        shipped = root / "blueprint.bundle"  # an unpacked sdist
        return shipped if shipped.is_file() else None
