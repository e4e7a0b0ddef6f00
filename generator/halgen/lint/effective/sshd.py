"""sshd's settings in the order sshd reads them."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from halgen.lint.effective.paths import Unseen, empty_glob_ok, matches, on_node
from halgen.lint.repo import Repo


@dataclass(frozen=True)
class SshdEntry:
    key: str  # lower-case
    value: str
    file: str
    line: int
    match: str  # '' outside a Match block, else its criteria


_SSHD_ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
SSHD_DROP_INS = "/etc/ssh/sshd_config.d/*.conf"  # what Debian's sshd_config includes first


@functools.cache
def sshd(repo: Repo, node: str) -> tuple[list[SshdEntry], list[Unseen]]:
    """The node's sshd settings in the order sshd reads them: its sshd_config if the
    tree has one, else Debian's (which includes the drop-ins first), Include followed
    (relative to /etc/ssh, globs sorted), each entry with the Match block it is in."""
    entries: list[SshdEntry] = []
    unseen: list[Unseen] = []
    main = f"nodes/{node}/etc/ssh/sshd_config"
    if repo.exists(main):
        _sshd_read(repo, node, main, "", entries, unseen, ())
    else:
        for rel in matches(repo, node, SSHD_DROP_INS):
            _sshd_read(repo, node, rel, "", entries, unseen, ())
    return entries, unseen


def _sshd_read(repo: Repo, node: str, rel: str, match: str, entries: list[SshdEntry], unseen: list[Unseen],
               chain: tuple[str, ...]) -> None:
    for number, raw in enumerate(repo.text(rel).splitlines(), 1):
        words = re.split(r"\s*=\s*|\s+", raw.split("#", 1)[0].strip(), maxsplit=1)
        if len(words) != 2:
            continue
        key, value = words[0].lower(), words[1].strip().strip('"')
        if key == "match":
            match = "" if value.lower() == "all" else value
        elif key == "include":
            for pattern in value.split():
                target = on_node(pattern, "/etc/ssh")
                found = matches(repo, node, target)
                if not found and not empty_glob_ok(repo, node, target):
                    unseen.append(Unseen(rel, number, "Include", target))
                for included in found:
                    if included not in (*chain, rel):
                        _sshd_read(repo, node, included, match, entries, unseen, (*chain, rel))
        else:
            entries.append(SshdEntry(_SSHD_ALIASES.get(key, key), value, rel, number, match))
