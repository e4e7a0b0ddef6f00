"""Boot a root tree as a container with systemd as PID 1 (systemd-nspawn) on a private
network's bridge, run commands in it, and pull its plug.

No systemd is needed on this machine: ``--register=no --keep-unit`` keeps nspawn away
from machined and from creating a scope. Commands reach the container through
``nsenter`` into its PID 1's namespaces. The container's network card is ``host0``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from halgen.host.netns import BRIDGE, PrivateNetwork
from halgen.host.processes import HostError, Processes, wait_until

INTERFACE = "host0"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Puts itself into each cgroup listed in $HALGEN_CGROUPS, then becomes the command.
_ENTER_CGROUPS = 'for cg in $HALGEN_CGROUPS; do echo $$ > "$cg/cgroup.procs"; done; exec "$@"'


def own_cgroups(name: str) -> list[Path]:
    """A cgroup of the container's own in each hierarchy systemd uses (the unified one, and
    on a hybrid host the name=systemd one too), under this process's cgroup. Without
    it every container started from here shares one cgroup, and their systemds remove
    each other's service cgroups ('Failed at step CGROUP')."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path.lstrip("/")
    if (CGROUP_ROOT / "cgroup.controllers").is_file():  # unified only
        bases = [CGROUP_ROOT / own.get("", "")]
    else:
        hierarchies = (("systemd", "name=systemd"), ("unified", ""))
        bases = [CGROUP_ROOT / mount / own.get(key, "") for mount, key in hierarchies
                 if (CGROUP_ROOT / mount).is_dir()]
    return [base / "halgen-nodes" / name for base in bases]


def remove_cgroups(groups: list[Path]) -> None:
    """Empty cgroups go with rmdir, deepest first (files in them are not real files)."""
    for group in groups:
        if not group.is_dir():
            continue
        for path in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()
            except OSError:
                pass
        try:
            group.rmdir()
        except OSError:
            pass


@dataclass
class Container:
    name: str
    root: Path
    proc: subprocess.Popen
    cgroups: list[Path]

    def init_pid(self) -> int:
        """PID (on this machine) of the container's systemd: nspawn's only child."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        if not children:
            raise HostError(f"container {self.name} has no init process (nspawn exited {self.proc.poll()})")
        return int(children[0])

    def run(self, argv: list[str], timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run argv inside the container (all of its namespaces, its root)."""
        pid = self.init_pid()
        full = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv]
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise HostError(f"{self.name}: {' '.join(argv)} exited {result.returncode}: "
                            f"{(result.stderr or result.stdout).strip()[-1000:]}")
        return result

    def running(self) -> bool:
        return self.proc.poll() is None

    def pull_plug(self) -> None:
        """Every process in the container dies at once, as in a host failure."""
        if not self.running():
            return
        try:
            os.kill(self.init_pid(), signal.SIGKILL)  # PID 1 of a namespace: takes all of it along
        except (HostError, ProcessLookupError):
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        remove_cgroups(self.cgroups)


def boot(name: str, root: Path, network: PrivateNetwork, processes: Processes) -> Container:
    """Boot ``root`` (writable: an overlay) with its console going to ``processes``' log
    ``<name>.console``; returns once its systemd runs."""
    groups = own_cgroups(f"{name}.{os.getpid()}")  # two rehearsals of one stack may run at once
    remove_cgroups(groups)
    for group in groups:
        group.mkdir(parents=True, exist_ok=True)
    argv = ["sh", "-ec", _ENTER_CGROUPS, "sh", *network.enter(),
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
            f"--directory={root}", f"--machine={name}", f"--network-bridge={BRIDGE}",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning", "HALGEN_CGROUPS": " ".join(map(str, groups))}
    proc = processes.spawn(argv, f"{name}.console", env=env)
    container = Container(name, root, proc, groups)

    def systemd_up() -> bool:
        if not container.running():
            raise HostError(f"container {name} stopped while booting; see {processes.log(name + '.console')}")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return bool(children) and Path(f"/proc/{children[0]}/comm").read_text().strip() == "systemd"

    wait_until(systemd_up, 60, f"systemd in container {name}", interval=0.2)
    return container
