"""The ufw commands of a script, run in order as ufw would: the rules in effect at the
end, the default policies and whether ufw is still enabled.

The whole command grammar a script may use counts: `insert N`, `prepend`, `route`,
`delete` (by rule or number), `limit`, `in|out on IFACE`, application profiles and
service names, `default`, `enable`, `disable` and `--force reset` (which clears the
rules and leaves ufw disabled)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace

ALL_PORTS = tuple(range(1, 65536))
ACTIONS = {"allow", "deny", "reject", "limit"}
# ufw's own defaults (Debian's /etc/default/ufw), which `ufw reset` brings back.
_RESET_DEFAULTS = {"incoming": "deny", "outgoing": "allow", "routed": "deny"}


@dataclass(frozen=True)
class UfwRule:
    line: int
    source: str  # 'any' or a CIDR
    ports: tuple[int, ...]  # ALL_PORTS when the rule names none
    proto: str
    action: str = "allow"
    interface: str = ""  # 'in on IFACE'
    route: bool = False  # forwarded traffic ('ufw route ...')
    file: str = ""  # the script it came from, when several were run

    def same_rule(self, other: UfwRule) -> bool:
        """Whether `ufw delete` of other removes this rule (where it was written does not matter)."""
        return replace(self, line=0, file="") == replace(other, line=0, file="")


@dataclass
class Firewall:
    """What the script leaves behind."""

    rules: list[UfwRule] = field(default_factory=list)  # in ufw's order, every action
    defaults: dict[str, tuple[str, int]] = field(default_factory=dict)  # direction -> (policy, line)
    enabled: tuple[bool, int] = (False, 0)  # and the line of the last enable, disable or reset
    switched_in: str = ""  # the script of that line, when several were run

    @property
    def allows(self) -> list[UfwRule]:
        return [r for r in self.rules if r.action in {"allow", "limit"}]


def ports_of(text: str) -> tuple[int, ...]:
    """'22', '80,443', '6000:6010' (a range) -> the ports."""
    ports: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (high.isdigit() or not high):
            ports.extend(range(int(low), int(high or low) + 1))
    return tuple(ports)


# Service names (/etc/services) and Debian's application profiles (/etc/ufw/applications.d)
# a hand edit may use. An unknown name counts as every port: lint cannot tell what it opens.
SERVICES = {"ssh": (22,), "openssh": (22,), "http": (80,), "https": (443,), "www": (80,), "www full": (80, 443),
            "www secure": (443,), "postgresql": (5432,), "redis": (6379,), "nginx full": (80, 443),
            "nginx http": (80,), "nginx https": (443,), "nginx qu": (443,)}


def _named_ports(text: str) -> tuple[int, ...]:
    return ports_of(text) if text[:1].isdigit() else SERVICES.get(text.lower(), ALL_PORTS)


def _rule(words: list[str], line: int, action: str, route: bool) -> UfwRule | None:
    """A rule in either syntax (the words after the action); None for outgoing rules."""
    interface = ""
    direction = "in"
    while words[:1] in (["in"], ["out"]) or words[:1] == ["on"]:
        if words[0] == "on" and len(words) > 1:
            interface, words = words[1], words[2:]
        else:
            direction, words = words[0], words[1:]
    words = [w for w in words if w not in {"log", "log-all"}]
    if direction == "out":
        return None
    if len(words) == 1 and words[0] not in {"from", "to", "proto"}:  # 'ufw allow 6379/tcp', 'ufw allow OpenSSH'
        port, _, proto = words[0].partition("/")
        return UfwRule(line, "any", _named_ports(port), proto or "any", action, interface, route)
    source, proto, ports, side = "any", "any", ALL_PORTS, ""
    pairs = iter(words)
    for word in pairs:
        value = next(pairs, "")
        if word in {"from", "to"}:
            side = word
            if word == "from":
                source = value
        elif word == "proto":
            proto = value
        elif word in {"port", "app"} and side != "from":  # a source port or app does not narrow what opens
            ports = _named_ports(value)
    return UfwRule(line, source, ports, proto, action, interface, route)


def _commands(script: str) -> list[tuple[int, list[str]]]:
    """(line, words after 'ufw') of every ufw command, a dry run left out."""
    found = []
    for number, raw in enumerate(script.splitlines(), 1):
        if "ufw" not in raw:
            continue
        for part in re.split(r"&&|\|\||[;|]", raw.split(" #", 1)[0]):
            try:
                words = shlex.split(part, comments=True)  # 'Nginx Full' is one app name
            except ValueError:  # an unbalanced quote: take the words as they stand
                words = part.split()
            while words and words[0] in {"sudo", "env", "command", "exec", "-n"}:
                words = words[1:]
            if not words or not (words[0] == "ufw" or words[0].endswith("/ufw")):
                continue
            if "comment" in words:
                words = words[:words.index("comment")]
            options = [w for w in words[1:] if w.startswith("--")]
            if "--dry-run" not in options:
                found.append((number, [w for w in words[1:] if not w.startswith("--")]))
    return found


def firewall(script: str, state: Firewall | None = None, file: str = "") -> Firewall:
    """Run the script's ufw commands, in order: on a new firewall, or on state, which a
    script run earlier (named by file in what it changes) left behind."""
    state = state or Firewall()
    for number, words in _commands(script):
        if _switches(words):
            state.switched_in = file
        verb = words[0] if words else ""
        if verb == "enable":
            state.enabled = (True, number)
        elif verb == "disable":
            state.enabled = (False, number)
        elif verb == "reset":
            state.rules.clear()
            state.defaults = {d: (p, number) for d, p in _RESET_DEFAULTS.items()}
            state.enabled = (False, number)
        elif verb == "default" and len(words) > 1:
            direction = words[2] if len(words) > 2 else "incoming"
            state.defaults[direction] = (words[1], number)
        elif verb == "delete" and len(words) > 1:
            _delete(state, words[1:], number)
        else:
            _add(state, words, number, file)
    return state


def _switches(words: list[str]) -> bool:
    return bool(words) and words[0] in {"enable", "disable", "reset"}


def _add(state: Firewall, words: list[str], number: int, file: str) -> None:
    route = words[:1] == ["route"]
    words = words[1:] if route else words
    position = len(state.rules)
    if words[:1] == ["insert"] and len(words) > 1 and words[1].isdigit():
        position, words = max(int(words[1]) - 1, 0), words[2:]
    elif words[:1] == ["prepend"]:
        position, words = 0, words[1:]
    if words[:1] and words[0] in ACTIONS and (found := _rule(words[1:], number, words[0], route)):
        state.rules.insert(position, replace(found, file=file))


def _delete(state: Firewall, words: list[str], number: int) -> None:
    if words[0].isdigit():
        index = int(words[0]) - 1
        if 0 <= index < len(state.rules):
            del state.rules[index]
        return
    route = words[:1] == ["route"]
    words = words[1:] if route else words
    if words[:1] and words[0] in ACTIONS and (target := _rule(words[1:], number, words[0], route)):
        state.rules = [r for r in state.rules if not r.same_rule(target)]
