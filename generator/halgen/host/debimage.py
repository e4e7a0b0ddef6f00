"""A Debian 12 root tree like a freshly created Linode's, built once with debootstrap and
cached: the image every node container of a rehearsal boots from.

The cache key is the recipe itself (suite, variant, packages, the steps after
debootstrap): change any of them and the next rehearsal builds a new image. Each image
directory holds ``root/`` (the tree), ``manifest.txt`` (``dpkg-query`` of what is in it)
and ``build.json`` (when, how long, how big). A build goes into a temporary directory
renamed into place at the end, so an interrupted build leaves no half image behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from halgen.host.processes import HostError

SUITE = "bookworm"
# What a Linode Debian 12 image has that debootstrap's default set lacks, plus what
# cloud-init needs to run its four stages from a NoCloud seed in a container
# (without python3-cffi-backend cloud-init stays unconfigured).
IMAGE_PACKAGES = (
    "systemd-sysv", "dbus", "udev", "cloud-init", "python3-cffi-backend", "openssh-server", "sudo",
    "ca-certificates", "ifupdown", "isc-dhcp-client", "iproute2", "locales", "procps", "curl",
)
# A virtual machine boots Debian's cloud kernel (and its initramfs) from the tree.
KERNEL_PACKAGES = ("linux-image-cloud-amd64",)
LOCALE = "en_US.UTF-8"
# Steps after debootstrap, run in the tree; part of the cache key.
FINISH_SCRIPT = f"""set -eu
echo '{LOCALE} UTF-8' > /etc/locale.gen
locale-gen >/dev/null
update-locale LANG={LOCALE}
# The archive debootstrap used stays for building the package mirror; nodes use the mirror.
mv /etc/apt/sources.list /etc/apt/upstream.list
: > /etc/apt/sources.list
printf 'datasource_list: [ NoCloud, None ]\\n' > /etc/cloud/cloud.cfg.d/90-rehearsal-datasource.cfg
# Every node makes its own identity at first boot, as on Linode.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
rm -rf /var/lib/cloud/*
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


@dataclass(frozen=True)
class Image:
    path: Path

    @property
    def root(self) -> Path:
        return self.path / "root"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.txt"

    def facts(self) -> dict[str, object]:
        return dict(json.loads((self.path / "build.json").read_text()))


def cache_dir() -> Path:
    """$HALGEN_CACHE, else /var/cache/halgen for root (what CI keeps between runs on one
    machine), else ~/.cache/halgen."""
    if env := os.environ.get("HALGEN_CACHE"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/halgen")
    return Path.home() / ".cache" / "halgen"


def packages(kernel: bool) -> tuple[str, ...]:
    return IMAGE_PACKAGES + (KERNEL_PACKAGES if kernel else ())


def recipe_key(kernel: bool = False) -> str:
    recipe = json.dumps({"suite": SUITE, "packages": packages(kernel), "finish": FINISH_SCRIPT}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def ensure_image(log: Callable[[str], None] = print, kernel: bool = False) -> Image:
    """The cached image for the current recipe, built first when there is none; with
    ``kernel``, the one virtual machines boot (a container needs none)."""
    image = Image(cache_dir() / "images" / f"{SUITE}-{'vm-' * kernel}{recipe_key(kernel)}")
    if (image.path / "build.json").is_file():
        return image
    for program in ("debootstrap", "systemd-nspawn"):
        if shutil.which(program) is None:
            raise HostError(f"{program} is missing: apt-get install debootstrap systemd-container")
    image.path.parent.mkdir(parents=True, exist_ok=True)
    building = image.path.with_name(image.path.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    started = time.monotonic()
    log(f"image: debootstrap {SUITE} into {building} (once per recipe, about 2 minutes)")
    _run(["debootstrap", "--include=" + ",".join(packages(kernel)), SUITE, str(building / "root")],
         building / "debootstrap.log", timeout=1800)
    _run(["chroot", str(building / "root"), "/bin/sh", "-c", FINISH_SCRIPT], building / "finish.log", timeout=600)
    manifest = subprocess.run(["chroot", str(building / "root"), "dpkg-query", "-W", "-f", "${Package} ${Version}\\n"],
                              capture_output=True, text=True, check=True).stdout
    (building / "manifest.txt").write_text(manifest)
    facts = {"suite": SUITE, "recipe": recipe_key(kernel), "seconds": round(time.monotonic() - started, 1),
             "megabytes": _megabytes(building / "root"), "packages": len(manifest.splitlines())}
    (building / "build.json").write_text(json.dumps(facts, indent=2) + "\n")
    building.rename(image.path)
    log(f"image: built in {facts['seconds']} s, {facts['megabytes']} MB, {facts['packages']} packages")
    return image


def _megabytes(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _run(argv: list[str], log_file: Path, timeout: float) -> None:
    with open(log_file, "wb") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    if result.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        raise HostError(f"{argv[0]} failed (exit {result.returncode}); the end of {log_file}:\n" + "\n".join(tail))
