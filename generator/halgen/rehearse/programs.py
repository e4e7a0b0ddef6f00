"""Which programs a rehearsal runs, which are missing here, and the one apt command
(Debian/Ubuntu package names) that installs them."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Program:
    name: str  # as the user knows it
    package: str  # the Debian package that provides it

    def present(self) -> bool:
        if self.name.startswith("/"):
            return Path(self.name).is_file()
        if self.name.startswith("perl module "):
            perl = shutil.which("perl")
            module = self.name.removeprefix("perl module ")
            return perl is not None and subprocess.run([perl, f"-M{module}", "-e1"], capture_output=True,
                                                       timeout=30).returncode == 0
        if self.name == "the postgres user":
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False
            return True
        return shutil.which(self.name) is not None


def needed(pg_version: int, bench: bool = False, tls: bool = False, patroni: bool = False) -> list[Program]:
    pg_bin = f"/usr/lib/postgresql/{pg_version}/bin"
    pg_package = f"postgresql-{pg_version}"
    programs = [
        Program("nginx", "nginx"),
        Program("haproxy", "haproxy"),
        Program("starman", "starman"),  # the seed's app server: the bench's baseline
        Program("start_server", "starlet"),  # Server::Starter; Debian's starlet needs it
        Program("perl module Plack", "libplack-perl"),
        Program("perl module DBD::Pg", "libdbd-pg-perl"),
        Program("perl module Redis", "libredis-perl"),
        Program("perl module IO::Socket::SSL", "libio-socket-ssl-perl"),  # Redis over TLS (vpc_tls)
        *(Program(f"{pg_bin}/{tool}", pg_package) for tool in ("postgres", "initdb", "pg_ctl", "pg_isready",
                                                                 "pg_basebackup", "psql")),
        Program("redis-server", "redis-server"),
        Program("redis-sentinel", "redis-sentinel"),
        Program("redis-cli", "redis-tools"),
        Program("bash", "bash"),
    ]
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the postgres user
        programs += [Program("runuser", "util-linux"), Program("the postgres user", pg_package)]
    if tls:  # certificates from a local ACME server, as certbot gets them from Let's Encrypt
        programs += [Program("openssl", "openssl"), Program("certbot", "certbot"), Program("pebble", "pebble"),
                     Program("pebble-challtestsrv", "pebble")]
    if patroni:  # automatic PostgreSQL failover: Patroni with its lock in etcd
        programs += [Program("/usr/bin/patroni", "patroni"), Program("/usr/bin/patronictl", "patroni"),
                     Program("etcd", "etcd-server"), Program("etcdctl", "etcd-client")]
    if bench:
        programs.append(Program("wrk", "wrk"))
    return programs


def missing(programs: list[Program]) -> list[Program]:
    return [p for p in programs if not p.present()]


def apt_command(programs: list[Program]) -> str:
    packages = sorted({p.package for p in programs})
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y {' '.join(packages)}"
