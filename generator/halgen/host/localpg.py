"""PostgreSQL on this machine: which server is installed, and as whom it runs.

PostgreSQL refuses to run as root: as root it runs as the postgres system user
(the Debian package makes it); as anyone else, as that user. Shared by
``halgen rehearse`` and the lint rule that starts a throwaway server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEBIAN_PG = Path("/usr/lib/postgresql")


def installed_pg_version() -> int | None:
    """The newest server version installed the Debian way (/usr/lib/postgresql/N)."""
    versions = sorted(int(p.name) for p in DEBIAN_PG.glob("*") if p.name.isdigit() and (p / "bin/postgres").exists())
    return versions[-1] if versions else None


def pg_bin_dir(wanted: int | None = None) -> Path | None:
    """The bin directory of version ``wanted`` if installed, else of the newest one."""
    if wanted is not None and (DEBIAN_PG / str(wanted) / "bin/postgres").exists():
        return DEBIAN_PG / str(wanted) / "bin"
    newest = installed_pg_version()
    if newest is not None:
        return DEBIAN_PG / str(newest) / "bin"
    on_path = shutil.which("postgres")  # not Debian's layout
    return Path(on_path).parent if on_path else None


def as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


def pg_superuser() -> str:
    """The superuser initdb makes: the OS user PostgreSQL runs as (peer authentication)."""
    import pwd

    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
