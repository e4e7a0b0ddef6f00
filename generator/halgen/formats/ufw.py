"""The ufw commands of a first-boot script: allow rules and default policies."""

from __future__ import annotations

import re
import shlex
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


# Service names ufw accepts for a port (from /etc/services) that a hand edit may use.
SERVICES = {"ssh": (22,), "openssh": (22,), "http": (80,), "https": (443,), "www": (80,), "postgresql": (5432,),
            "redis": (6379,), "nginx full": (80, 443), "nginx http": (80,), "nginx https": (443,)}


def _ufw_allow(words: list[str]) -> tuple[str, tuple[int, ...], str] | None:
    """The words after 'ufw allow|limit' (both syntaxes) -> (source, ports, proto)."""
    if words[:1] == ["in"] or words[:1] == ["out"]:
        words = words[1:]
    if words[:1] == ["on"] and len(words) > 1:  # 'on IFACE': every interface matters here
        words = words[2:]
    if len(words) == 1 and words[0] not in {"from", "proto"}:  # 'ufw allow 6379/tcp', 'ufw allow ssh'
        port, _, proto = words[0].partition("/")
        ports = SERVICES.get(port.lower()) or ports_of(port)
        return "any", ports, proto or "any"
    options = dict(zip(words[::2], words[1::2], strict=False))
    if "from" not in options and "port" not in options and "proto" not in options and "app" not in options:
        return None
    if "port" in options:
        ports = ports_of(options["port"])
    elif "app" in options:
        ports = SERVICES.get(options["app"].lower(), ALL_PORTS)
    else:
        ports = ALL_PORTS
    return options.get("from", "any"), ports, options.get("proto", "any")


def rules(script: str) -> tuple[list[UfwRule], dict[str, tuple[str, int]]]:
    """The 'ufw allow' and 'ufw limit' rules (also 'ufw insert N ...') and the default
    policies (direction -> (policy, line))."""
    found: list[UfwRule] = []
    defaults: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.split("#", 1)[0].split(" comment ", 1)[0].strip()
        try:
            words = shlex.split(line)  # 'Nginx Full' is one app name
        except ValueError:  # an unbalanced quote: take the words as they stand
            words = line.split()
        if words[:2] == ["ufw", "insert"] and len(words) > 3:
            words = ["ufw", *words[3:]]
        if words[:1] == ["ufw"] and words[1:2] in (["allow"], ["limit"]) and (parsed := _ufw_allow(words[2:])):
            found.append(UfwRule(number, parsed[0], parsed[1], parsed[2]))
        default = re.match(r"^ufw default (\w+) (incoming|outgoing)", line)
        if default:
            defaults[default.group(2)] = (default.group(1), number)
    return found, defaults
