"""The ufw commands of a first-boot script: allow rules and default policies."""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL_PORTS = tuple(range(1, 65536))


@dataclass(frozen=True)
class UfwRule:
    line: int
    source: str  # 'any' or a CIDR
    ports: tuple[int, ...]  # ALL_PORTS when the rule names none
    proto: str


def ports_of(text: str) -> tuple[int, ...]:
    """'22', '80,443', '6000:6010' (a range) -> the ports."""
    ports: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (high.isdigit() or not high):
            ports.extend(range(int(low), int(high or low) + 1))
    return tuple(ports)


def _ufw_allow(words: list[str]) -> tuple[str, tuple[int, ...], str] | None:
    """The words after 'ufw allow' (both syntaxes) -> (source, ports, proto)."""
    if len(words) == 1 and words[0] not in {"from", "proto"}:  # 'ufw allow 6379/tcp'
        port, _, proto = words[0].partition("/")
        return "any", ports_of(port), proto or "any"
    options = dict(zip(words[::2], words[1::2], strict=False))
    if "from" not in options and "port" not in options and "proto" not in options:
        return None
    ports = ports_of(options["port"]) if "port" in options else ALL_PORTS
    return options.get("from", "any"), ports, options.get("proto", "any")


def rules(script: str) -> tuple[list[UfwRule], dict[str, tuple[str, int]]]:
    """The 'ufw allow' rules and the default policies (direction -> (policy, line))."""
    rules: list[UfwRule] = []
    defaults: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.split("#", 1)[0].split(" comment ", 1)[0].strip()
        words = line.split()
        if words[:2] == ["ufw", "allow"] and (parsed := _ufw_allow(words[2:])):
            rules.append(UfwRule(number, parsed[0], parsed[1], parsed[2]))
        default = re.match(r"^ufw default (\w+) (incoming|outgoing)", line)
        if default:
            defaults[default.group(2)] = (default.group(1), number)
    return rules, defaults
