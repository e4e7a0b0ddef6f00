"""Run what a generated systemd unit runs, without systemd: its ExecStart, working
directory and environment (Environment= and EnvironmentFile= lines)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from halgen.formats import envfile, systemd


@dataclass(frozen=True)
class ServiceCommand:
    argv: list[str]
    cwd: str | None
    inline_env: dict[str, str]
    env_files: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        """Environment= values, then each EnvironmentFile= in order (read now: they may
        be written after the unit, like the secrets files of 'halgen build')."""
        env = dict(self.inline_env)
        for env_file in self.env_files:
            optional = env_file.startswith("-")
            path = Path(env_file.removeprefix("-"))
            if path.is_file() or not optional:
                env.update(read_env_file(path))
        return env


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as systemd reads them (generated files use no quoting)."""
    return {key: setting.value for key, setting in envfile.parse(path.read_text(encoding="utf-8"))[0].items()}


def parse_unit(text: str) -> ServiceCommand:
    settings: dict[str, list[str]] = {}
    for entry in systemd.parse(text)[0]:
        settings.setdefault(entry.key, []).append(entry.value)
    (exec_start,) = settings["ExecStart"]
    inline_env: dict[str, str] = {}
    for assignment in settings.get("Environment", []):
        for word in shlex.split(assignment):
            name, _, value = word.partition("=")
            inline_env[name] = value
    return ServiceCommand(argv=shlex.split(exec_start), cwd=settings.get("WorkingDirectory", [None])[-1],
                          inline_env=inline_env, env_files=tuple(settings.get("EnvironmentFile", [])))


def service_command(unit: Path) -> ServiceCommand:
    return parse_unit(unit.read_text(encoding="utf-8"))
