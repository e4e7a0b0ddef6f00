"""ufw as the node runs it: cloud-init's commands, the first-boot script, other scripts."""

from __future__ import annotations

import functools
import re

from halgen.formats import ufw
from halgen.lint.effective.paths import split
from halgen.lint.repo import Repo


def _runcmd(text: str) -> str:
    """A cloud-init file's text less its package list (which names ufw on every node)."""
    return re.sub(r"^packages:.*$", "", text, flags=re.M)


def _runcmd_lines(text: str) -> tuple[str, str]:
    """A cloud-init file's lines as shell, YAML list syntax dropped ('- [ufw, disable]' ->
    'ufw disable'), split where it calls the first-boot script: (before, after)."""
    shell = [re.sub(r"^\s*-\s*\[?|[\]\"']|,(?=\s)", "", line).strip() for line in text.splitlines()]
    at = next((i for i, line in enumerate(shell) if re.search(r"-first-boot\b", line)), len(shell))
    blank = [""] * len(shell)  # keeps line numbers
    return "\n".join(shell[:at] + blank[at:]), "\n".join(blank[:at] + shell[at:])


@functools.cache
def firewall(repo: Repo, boot: str) -> ufw.Firewall:
    """The node's ufw at the end: cloud-init's commands before the first-boot script, the
    script, cloud-init's after it, then any other script of the node that runs ufw."""
    node = split(boot)[0]
    cloud = repo.one(node, r"cloud-init\.yaml")
    before, after = _runcmd_lines(repo.text(cloud)) if cloud and "ufw" in _runcmd(repo.text(cloud)) else ("", "")
    state = ufw.firewall(before, file=cloud or "")
    state = ufw.firewall(repo.text(boot), state, boot)
    state = ufw.firewall(after, state, cloud or "")
    for rel in repo.node_files(node, r"usr/local/sbin/[^/]+|etc/cron\.d/[^/]+"):
        if rel != boot and "ufw" in repo.text(rel):
            state = ufw.firewall(repo.text(rel), state, rel)
    return state
