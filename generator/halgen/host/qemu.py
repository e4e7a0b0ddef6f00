"""Boot a root tree as a QEMU virtual machine on a private network's bridge: a real
kernel of its own (netfilter, sysctl, a block device), emulated (TCG), so no KVM is
needed. Slow - about a minute to boot - so one node at a time.

The tree becomes a raw ext4 disk (``mkfs.ext4 -d``); the kernel and initramfs are
taken from the tree's /boot and booted directly. The machine has no channel for
commands: what a check needs, a unit of the rehearsal prints on the second serial port
(see ``REPORT_UNIT``), and ``run`` answers from that record.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from halgen.host.netns import PrivateNetwork
from halgen.host.processes import HostError, Processes

INTERFACE = "eth0"  # with net.ifnames=0 on the kernel command line
DISK_MB = 4096
MEMORY_MB = 1536
REPORT_SCRIPT = "/usr/local/lib/halgen-rehearsal-report"
# Not ordered after cloud-final.service (which comes after multi-user.target: a cycle);
# the script waits for cloud-init itself, and as a simple service it holds up no boot.
REPORT_UNIT = """[Unit]
Description=Rehearsal: report this node's first boot on the second serial port

[Service]
Type=simple
ExecStart={script}

[Install]
WantedBy=multi-user.target
"""
END = "@@ end"


def report_script(commands: list[list[str]]) -> str:
    """Waits for cloud-init and for systemd to finish booting, then runs each command and
    prints '@@ ARGV', its output and '@@ exit N' to /dev/ttyS1."""
    lines = ["#!/bin/sh", "exec > /dev/ttyS1 2>&1", "cloud-init status --wait >/dev/null 2>&1",
             "while systemctl is-system-running | grep -qE 'initializing|starting'; do sleep 1; done"]
    for argv in commands:
        quoted = shlex.join(argv)
        lines += [f"echo {shlex.quote('@@ ' + quoted)}", f"{quoted}", 'echo "@@ exit $?"']
    lines.append(f"echo '{END}'")
    return "\n".join(lines) + "\n"


def install_report(root: Path, commands: list[list[str]]) -> None:
    """The rehearsal's own unit in the machine's tree (not in its user-data)."""
    script = root / REPORT_SCRIPT.lstrip("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(report_script(commands))
    script.chmod(0o755)
    unit = root / "etc/systemd/system/halgen-rehearsal-report.service"
    unit.write_text(REPORT_UNIT.format(script=REPORT_SCRIPT))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")


def make_disk(tree: Path, disk: Path, size_mb: int = DISK_MB) -> None:
    result = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(tree), str(disk), f"{size_mb}M"],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise HostError(f"mkfs.ext4 -d {tree} failed: {result.stderr.strip()}")


@dataclass
class VirtualMachine:
    name: str
    proc: subprocess.Popen
    report: Path  # what the second serial port printed

    def running(self) -> bool:
        return self.proc.poll() is None

    def recorded(self) -> dict[str, subprocess.CompletedProcess[str]]:
        text = self.report.read_text(errors="replace") if self.report.exists() else ""
        if END not in text:
            return {}
        results: dict[str, subprocess.CompletedProcess[str]] = {}
        current, out = "", list[str]()
        for line in text.replace("\r\n", "\n").splitlines():
            if line.startswith("@@ exit ") and current:
                results[current] = subprocess.CompletedProcess(current, int(line.split()[2]), "\n".join(out) + "\n", "")
                current, out = "", []
            elif line.startswith("@@ ") and line != END:
                current, out = line[3:], []
            else:
                out.append(line)
        return results

    def run(self, argv: list[str], timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        """The recorded result of argv; before the record is complete, cloud-init is
        'running' and systemd 'starting' (nothing else can be asked yet)."""
        recorded = self.recorded()
        if not recorded:
            if argv == ["cloud-init", "status"]:
                return subprocess.CompletedProcess(argv, 0, "status: running\n", "")
            if argv == ["systemctl", "is-system-running"]:
                return subprocess.CompletedProcess(argv, 1, "starting\n", "")
        result = recorded.get(shlex.join(argv))
        if result is None:
            return subprocess.CompletedProcess(argv, 127, "", f"{shlex.join(argv)}: not in the machine's report")
        if check and result.returncode != 0:
            raise HostError(f"{self.name}: {shlex.join(argv)} exited {result.returncode}")
        return result

    def pull_plug(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait(10)



def boot(name: str, tree: Path, disk: Path, network: PrivateNetwork, processes: Processes, tap: str,
         mac: str) -> VirtualMachine:
    """Boot ``disk`` with the kernel and initramfs of ``tree``, its network card on the
    bridge through ``tap``."""
    kernel, initrd = (tree / "vmlinuz").resolve(), (tree / "initrd.img").resolve()
    for path in (kernel, initrd):
        if not path.is_file():
            raise HostError(f"{path} is missing: the image has no kernel")
    boot_files = disk.parent / f"{name}-boot"
    boot_files.mkdir(exist_ok=True)
    for path in (kernel, initrd):  # the tree may be an overlay that is unmounted while the machine runs
        (boot_files / path.name).write_bytes(path.read_bytes())
    network.add_tap(tap)
    report = processes.log_dir / f"{name}.report"
    report.unlink(missing_ok=True)
    argv = [*network.enter(), "qemu-system-x86_64", "-name", name, "-accel", "tcg,tb-size=256",
            "-m", str(MEMORY_MB), "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(boot_files / kernel.name), "-initrd", str(boot_files / initrd.name),
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1",
            "-drive", f"file={disk},format=raw,if=virtio",
            "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
            "-serial", f"file:{processes.log_dir / (name + '.serial')}", "-serial", f"file:{report}"]
    processes.log_dir.mkdir(parents=True, exist_ok=True)
    proc = processes.spawn(argv, f"{name}.qemu")
    time.sleep(1)
    if proc.poll() is not None:
        raise HostError(f"qemu for {name} exited at once: see {processes.log(name + '.qemu')}")
    return VirtualMachine(name, proc, report)
