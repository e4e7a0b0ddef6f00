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
        if self.target_name != "wheel" or version == "editable":  # an editable install is the checkout itself
            return
        root = Path(self.root)
        inside = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            self.app.display_warning("not a git checkout: the wheel carries no blueprint history")
            return
        bundle = Path(tempfile.mkdtemp(prefix="halgen-bundle-")) / "blueprint.bundle"
        subprocess.run(["git", "bundle", "create", str(bundle), "HEAD", "--tags"], cwd=root, check=True,
                       capture_output=True)
        build_data["force_include"][str(bundle)] = "halgen/_bundled/blueprint.bundle"
