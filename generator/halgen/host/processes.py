"""Start long-running programs in their own process groups and stop every one of them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from halgen.errors import HalgenError

T = TypeVar("T")
# Exceptions that mean "not ready yet" while a server starts.
NOT_YET = (AssertionError, OSError, IndexError, ValueError, subprocess.SubprocessError)


class HostError(HalgenError):
    """A program did not start, stop or answer in time; the message says which and how."""


@dataclass
class Processes:
    """Every program started, each the leader of its own process group, so that one
    signal reaches it and everything it forked (Starman workers, PostgreSQL backends)."""

    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=cwd)
        self.procs.append(proc)
        self.names[proc.pid] = name
        return proc

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def signal_group(self, proc: subprocess.Popen, signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> None:
        """TERM the group (after CONT, in case a drill stopped it), then KILL what is left."""
        for signum in (signal.SIGCONT, signal.SIGTERM):
            self.signal_group(proc, signum)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # The leader may be gone while members of its group live on: KILL the group anyway.
        self.signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        """In reverse start order: clients before the servers they use."""
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def run(argv: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """subprocess.run for commands that start others (scripts, runuser): in a process group
    of their own, so that a timeout or Ctrl-C ends all of it, not only its leader."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; an exception counts as 'not yet'
    (a server that is still starting), and the last one is shown on a timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except NOT_YET as err:
            last_error, result = err, None
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def can_bind(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    def accepts() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_until(accepts, timeout, f"a listener on {host}:{port}", interval=0.05)


_PROBE = """import socket, sys, time
deadline = time.monotonic() + float(sys.argv[3])
while True:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
"""


def wait_for_port_from(enter: tuple[str, ...] | list[str], host: str, port: int, timeout: float = 15.0) -> None:
    """wait_for_port, probing from inside the namespace ``enter`` runs a program in (an
    address in a private network is not reachable from here)."""
    if not enter:
        wait_for_port(host, port, timeout)
        return
    probe = subprocess.run([*enter, sys.executable, "-c", _PROBE, host, str(port), str(timeout)],
                           capture_output=True, timeout=timeout + 30)
    if probe.returncode != 0:
        raise TimeoutError(f"timed out after {timeout}s waiting for a listener on {host}:{port}")
