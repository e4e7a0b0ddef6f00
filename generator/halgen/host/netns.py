"""A private network on this machine: a network namespace of our own with one bridge in it
and no route to any real interface. The stack's VPC addresses (10.x) are used only here."""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from halgen.host.processes import HostError

BRIDGE = "br0"


@dataclass(frozen=True)
class PrivateNetwork:
    name: str  # the namespace, under /run/netns
    gateway: ipaddress.IPv4Interface  # the bridge's own address: where the helpers (mirror, resolver) listen

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def enter(self) -> list[str]:
        """The argv prefix that runs a program inside the namespace. (``ip netns exec``
        remounts /sys, which systemd-nspawn then fails on.)"""
        return ["nsenter", f"--net={self.path}"]

    def create(self) -> None:
        self.delete()
        self._steps(["ip", "netns", "add", self.name],
                    [*self._ip(), "link", "set", "lo", "up"],
                    [*self._ip(), "link", "add", BRIDGE, "type", "bridge"],
                    [*self._ip(), "addr", "add", str(self.gateway), "dev", BRIDGE],
                    [*self._ip(), "link", "set", BRIDGE, "up"])
        routes = subprocess.run([*self._ip(), "-4", "route", "show", "default"], capture_output=True, text=True)
        if routes.stdout.strip():  # a fresh namespace has none; never let traffic out
            raise HostError(f"private network {self.name} has a default route: {routes.stdout.strip()}")

    def add_address(self, address: str) -> None:
        """Another address on the bridge, for one more helper."""
        self._steps([*self._ip(), "addr", "add", f"{address}/{self.gateway.network.prefixlen}", "dev", BRIDGE])

    def add_tap(self, tap: str) -> None:
        """A tap device on the bridge, for a virtual machine's network card."""
        self._steps([*self._ip(), "tuntap", "add", tap, "mode", "tap"],
                    [*self._ip(), "link", "set", tap, "master", BRIDGE],
                    [*self._ip(), "link", "set", tap, "up"])

    def _steps(self, *commands: list[str]) -> None:
        for argv in commands:
            result = subprocess.run(argv, capture_output=True, text=True)
            if result.returncode != 0:
                raise HostError(f"private network: {' '.join(argv)} failed: {result.stderr.strip()}")

    def delete(self) -> None:
        if self.path.exists():
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    def _ip(self) -> list[str]:
        return ["ip", "-n", self.name]
