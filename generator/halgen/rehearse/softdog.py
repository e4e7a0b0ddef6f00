"""A stand-in for the softdog kernel module on one rehearsal node, so that Patroni's
fencing is rehearsed too.

On a node, Patroni opens /dev/watchdog when it becomes the primary, sets its timeout
(TTL - safety margin) and pings it every loop; if the pings stop (Patroni hung, the node
starved), the kernel resets the node before the leader lock expires, so a hung primary
never wakes up beside a promoted replica. Here Patroni's 'testing' watchdog driver writes
the same events into a named pipe (``Ctimeout=N``, ``1`` per ping, ``V`` before a clean
close), and when the pings stop for the timeout this stand-in "resets" the node: it
calls ``reset``, which kills the node's Patroni and PostgreSQL.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_TIMEOUT_S = 60.0  # a Linux watchdog's timeout until its opener sets one


class Softdog:
    def __init__(self, device: Path, reset: Callable[[], None], owner: tuple[int, int] | None = None):
        self.device = device
        self.reset = reset
        self.resets: list[float] = []  # time.monotonic() of each reset
        device.parent.mkdir(parents=True, exist_ok=True)
        if device.exists():
            device.unlink()
        os.mkfifo(device, 0o600)
        if owner:
            os.chown(device, *owner)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"softdog {device}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        timeout, deadline, armed, magic = DEFAULT_TIMEOUT_S, 0.0, False, False
        fd = os.open(self.device, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([fd], [], [], 0.1)
                if readable:
                    data = os.read(fd, 4096)
                    if not data:  # the opener closed the device: reopen for the next one
                        os.close(fd)
                        fd = os.open(self.device, os.O_RDONLY | os.O_NONBLOCK)
                        armed = armed and not magic  # closed without 'V': a watchdog keeps counting
                        magic = False
                        time.sleep(0.05)
                        continue
                    for line in data.split(b"\n"):
                        if line.startswith(b"Ctimeout="):
                            timeout = float(line.split(b"=", 1)[1])
                            line = b""
                        for byte in line:
                            magic = byte == ord("V")
                            if not magic:
                                armed, deadline = True, time.monotonic() + timeout
                if armed and time.monotonic() > deadline:
                    armed = False
                    self.resets.append(time.monotonic())
                    self.reset()
        finally:
            os.close(fd)
