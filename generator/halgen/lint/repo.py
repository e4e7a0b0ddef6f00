"""A read-only view of a generated repo for the lint rules: its files (cached),
parsed where a rule needs it, and the answers and model it was made from."""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from halgen.compiler.answers import Answers
from halgen.compiler.model import Node, Stack, derive
from halgen.errors import AnswersError, Problem
from halgen.formats import base, envfile, haproxy, pgconf, pghba, redisconf, systemd

ANSWERS_FILE = ".copier-answers.yml"
# Never linted: gitignored (secret-bearing) output and VCS data.
SKIPPED_DIRS = {".git", "secrets", "build", ".venv", "__pycache__"}


class Repo:
    # Methods are cached per instance (functools.cache keeps the instance alive, which
    # is fine: a Repo lives for one lint run).

    def __init__(self, root: Path):
        self.root = root.resolve()

    # --- files -------------------------------------------------------------------

    @functools.cached_property
    def files(self) -> tuple[str, ...]:
        """Every file the lint looks at, relative and '/'-separated, sorted."""
        found: list[str] = []
        for directory, dirs, names in os.walk(self.root):
            rel_dir = Path(directory).relative_to(self.root)
            dirs[:] = sorted(d for d in dirs if not (rel_dir == Path(".") and d in SKIPPED_DIRS))
            found.extend((rel_dir / name).as_posix() for name in names)
        return tuple(sorted(found))

    @functools.cached_property
    def tracked_outside(self) -> tuple[str, ...]:
        """Files git tracks that `files` leaves out (under secrets/, build/...): in a git
        repo "tracked" is git's list, whatever .gitignore says."""
        if not (self.root / ".git").exists():
            return ()
        try:
            listed = subprocess.run(["git", "-c", f"safe.directory={self.root}", "-C", str(self.root), "ls-files",
                                     "-z"], capture_output=True, check=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return ()
        names = listed.decode("utf-8", errors="replace").split("\0")
        return tuple(sorted(n for n in names if n.split("/", 1)[0] in SKIPPED_DIRS - {".git"}))

    def glob(self, pattern: str) -> list[str]:
        """Files matching a regular expression on the relative path."""
        compiled = re.compile(pattern)
        return [f for f in self.files if compiled.fullmatch(f)]

    @functools.cache  # noqa: B019
    def text(self, rel: str) -> str:
        path = self.root / rel
        try:
            # Regular files only: a FIFO would block, a symlink loop raise.
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        except OSError:
            return ""

    @functools.cached_property
    def _file_set(self) -> frozenset[str]:
        return frozenset(self.files)

    def exists(self, rel: str) -> bool:
        return rel in self._file_set

    def line_of(self, rel: str, pattern: str, default: int = 1) -> int:
        """The first line of rel matching the regular expression pattern."""
        compiled = re.compile(pattern)
        for number, line in enumerate(self.text(rel).splitlines(), 1):
            if compiled.search(line):
                return number
        return default

    # --- nodes -------------------------------------------------------------------

    @functools.cached_property
    def node_dirs(self) -> tuple[str, ...]:
        return tuple(sorted({f.split("/")[1] for f in self.files if f.startswith("nodes/") and f.count("/") >= 2}))

    @functools.cached_property
    def _files_by_node(self) -> dict[str, list[str]]:
        by_node: dict[str, list[str]] = {}
        for rel in self.files:
            parts = rel.split("/", 2)
            if len(parts) == 3 and parts[0] == "nodes":
                by_node.setdefault(parts[1], []).append(rel)
        return by_node

    def node_files(self, node: str, pattern: str) -> list[str]:
        # Per node, not over every file: a 200-server repo asks this for each node.
        compiled = re.compile(f"nodes/{re.escape(node)}/{pattern}")
        return [f for f in self._files_by_node.get(node, []) if compiled.fullmatch(f)]

    def one(self, node: str, pattern: str) -> str | None:
        found = self.node_files(node, pattern)
        return found[0] if found else None

    # --- answers and model ---------------------------------------------------------

    @functools.cached_property
    def _answers(self) -> tuple[Answers | None, list[Problem]]:
        from halgen.compiler.pipeline import load_repo_answers

        try:
            return load_repo_answers(self.root), []
        except AnswersError as err:
            return None, err.problems

    @property
    def answers(self) -> Answers | None:
        return self._answers[0]

    @property
    def answer_problems(self) -> list[Problem]:
        return self._answers[1]

    @functools.cached_property
    def stack(self) -> Stack | None:
        """The model of the answers (None when they are missing or invalid)."""
        return derive(self.answers) if self.answers is not None else None

    def node(self, name: str) -> Node | None:
        if self.stack is None:
            return None
        return next((n for n in self.stack.nodes if n.name == name), None)

    # --- parsed files ----------------------------------------------------------------

    @functools.cache  # noqa: B019
    def pg_conf(self, rel: str) -> tuple[dict[str, base.Setting], list[base.ParseError], list[base.Setting]]:
        return pgconf.parse(self.text(rel))

    @functools.cache  # noqa: B019
    def hba(self, rel: str) -> tuple[list[pghba.HbaEntry], list[base.ParseError]]:
        return pghba.parse(self.text(rel))

    @functools.cache  # noqa: B019
    def redis(self, rel: str) -> tuple[list[redisconf.Directive], list[base.ParseError]]:
        return redisconf.parse(self.text(rel))

    @functools.cache  # noqa: B019
    def unit(self, rel: str) -> tuple[list[systemd.UnitEntry], list[base.ParseError]]:
        return systemd.parse(self.text(rel))

    @functools.cache  # noqa: B019
    def env(self, rel: str) -> dict[str, base.Setting]:
        return envfile.parse(self.text(rel))[0]

    @functools.cache  # noqa: B019
    def yaml(self, rel: str) -> tuple[Any, tuple[int, str] | None]:
        """A YAML file's data, or (None, (line, problem)) when it does not parse."""
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        text = self.text(rel)
        try:
            return YAML(typ="safe").load(text), None  # libyaml when available: these files are big
        except YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            last = max(len(text.splitlines()), 1)  # an error at the end is on the last line, not past it
            return None, (min(mark.line + 1, last) if mark else 1, str(getattr(err, "problem", err)))

    @functools.cache  # noqa: B019
    def cloud_firewall(self, rel: str) -> dict[str, Any] | None:
        """The "rules" object of a Cloud Firewall file; None when it is missing or unreadable (HAL107 says why)."""
        import json

        try:
            rules = json.loads(self.text(rel))["rules"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None
        return rules if isinstance(rules, dict) else None

    @functools.cache  # noqa: B019
    def haproxy(self, rel: str) -> tuple[list[haproxy.Section], list[base.ParseError]]:
        return haproxy.parse(self.text(rel))

    @functools.cache  # noqa: B019
    def nginx(self, rel: str) -> dict:
        from halgen.formats import nginx

        return nginx.parse(self.root / rel)

    # --- well-known files, found by shape (not by the answers, which may be broken) ---

    def nginx_confs(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/nginx/nginx\.conf")

    def haproxy_confs(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/haproxy/haproxy\.cfg")

    def pg_confs(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/postgresql/\d+/main/postgresql\.conf")

    def hba_files(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/postgresql/\d+/main/pg_hba\.conf")

    def redis_confs(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/redis/redis\.conf")

    def sentinel_confs(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/redis/sentinel\.conf")

    def units(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/systemd/system/[^/]+\.service")

    def timers(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/systemd/system/[^/]+\.timer")

    def scheduled(self, node: str) -> list[tuple[str, str, str]]:
        """The node's timers: (timer file, the service it starts, that service's ExecStart;
        "" when the service is not in the repo)."""
        found = []
        for rel in self.node_files(node, r"etc/systemd/system/[^/]+\.timer"):
            entries = self.unit(rel)[0]
            name = next((e.value for e in entries if e.section == "Timer" and e.key == "Unit"),
                        rel.rsplit("/", 1)[1].removesuffix(".timer") + ".service")
            service = f"nodes/{node}/etc/systemd/system/{name}"
            command = next((e.value for e in self.unit(service)[0] if e.key == "ExecStart"), "") \
                if self.exists(service) else ""
            found.append((rel, service, command))
        return found

    def app_units(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/systemd/system/[^/]+-app-\d+\.service")

    def app_envs(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/etc/[^/]+/app\.env")

    def cloud_inits(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/cloud-init\.yaml")

    def first_boots(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/usr/local/sbin/[^/]+-first-boot")

    def scripts(self) -> list[str]:
        return self.glob(r"nodes/[^/]+/usr/local/sbin/[^/]+|scripts/[^/]+\.sh")


def node_of(rel: str) -> str:
    """'nodes/db1/etc/...' -> 'db1'."""
    return rel.split("/")[1]
