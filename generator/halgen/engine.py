"""A fast renderer for halgen's blueprint, used by ``halgen render``.

copier stays the engine of ``halgen new`` and ``copier update``; it spends a few
milliseconds of bookkeeping per output file, which a 200-server stack (400+
files) turns into seconds. This module renders the same blueprint with the
same Jinja setup and the subset of copier's conventions the blueprint uses:
``.jinja`` suffixes, Jinja in path parts, ``{% yield x from xs %}`` loops in
path parts, empty parts skipping a file, and source file modes.
``tests/test_copier.py`` proves both engines give identical trees.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, Template
from jinja2.sandbox import SandboxedEnvironment

from .blueprint import RENDERED_VARIABLE, STACK_VARIABLE, TARGET_VARIABLE, HalgenExtension
from .model import LINODE, Target, derive

SUFFIX = ".jinja"
DERIVED = ("cloud-init.yaml",)  # made from the other outputs
ANSWERS_FILE = ".copier-answers.yml"
# copier's default exclusions that can occur inside a blueprint folder
_EXCLUDE = ("~*", "*.pyc", "*.pyo", "__pycache__", ".git", ".DS_Store", ".svn")
_YIELD = re.compile(r"^(?P<pre>.*?)\{%-?\s*yield\s+(?P<var>\w+)\s+from\s+(?P<expr>.+?)\s*-?%\}"
                    r"(?P<body>.*?)\{%-?\s*endyield\s*-?%\}(?P<post>.*)$", re.S)


class Blueprint:
    def __init__(self, root: Path, skip: tuple[str, ...] = ()):
        """``root``: a blueprint folder (blueprints/NAME); ``skip``: output file names not to render."""
        self.root = root
        self.skip = skip
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(root)),
            extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension", HalgenExtension],
            keep_trailing_newline=True,
        )
        self._path_templates: dict[str, Template] = {}

    def render(self, answers: dict[str, Any], target: Target = LINODE,
               extra: dict[str, Any] | None = None) -> Iterator[tuple[Path, str, int]]:
        """Yield (relative output path, content, mode) for every output file.

        Files named in DERIVED are rendered last, with every other output at hand
        (user-data packs a node's files): no second render of the blueprint."""
        context = {
            **answers,
            "_copier_answers": dict(sorted(answers.items())),
            "_copier_conf": {"answers_file": ANSWERS_FILE, "src_path": self.root.parent.parent},
            TARGET_VARIABLE: target,
            STACK_VARIABLE: derive(answers, target),  # answers are complete and valid here
            **(extra or {}),
        }
        rendered: dict[str, tuple[bytes, int]] = {}
        sources = [s for s in self._sources() if self._output_name(s) not in self.skip]
        for source in sorted(sources, key=lambda s: self._output_name(s) in DERIVED):
            if self._output_name(source) in DERIVED:
                context[RENDERED_VARIABLE] = rendered
            for path, content, mode in self._render_source(source, context):
                rendered[path.as_posix()] = (content.encode(), mode)
                yield path, content, mode

    def _output_name(self, source: Path) -> str:
        return source.name.removesuffix(SUFFIX)

    def _render_source(self, source: Path, context: dict[str, Any]) -> Iterator[tuple[Path, str, int]]:
        relsource = source.relative_to(self.root)
        templated = source.name.endswith(SUFFIX)
        parts = relsource.with_name(source.name.removesuffix(SUFFIX)).parts if templated else relsource.parts
        mode = source.stat().st_mode & 0o777
        for out_parts, ctx in self._expand(parts, context):
            if templated:
                content = self.env.get_template(relsource.as_posix()).render(ctx)
            else:
                content = source.read_text(encoding="utf-8")
            yield Path(*out_parts), content, mode

    def _sources(self) -> list[Path]:
        found = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).parts
            if path.is_file() and not any(fnmatch.fnmatch(p, pat) for p in rel for pat in _EXCLUDE):
                found.append(path)
        return found

    def _expand(self, parts: tuple[str, ...], ctx: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """Render path parts left to right; a yield part forks the context per item."""
        if not parts:
            yield (), ctx
            return
        head, rest = parts[0], parts[1:]
        match = _YIELD.match(head)
        if match:
            items = self.env.compile_expression(match["expr"])(**ctx)
            part_template = self._template(match["pre"] + match["body"] + match["post"])
            for item in items or ():
                inner = {**ctx, match["var"]: item}
                rendered = part_template.render(inner)
                if rendered:
                    for tail, tail_ctx in self._expand(rest, inner):
                        yield (rendered, *tail), tail_ctx
            return
        rendered = self._template(head).render(ctx) if ("{{" in head or "{%" in head) else head
        if rendered:
            for tail, tail_ctx in self._expand(rest, ctx):
                yield (rendered, *tail), tail_ctx

    def _template(self, source: str) -> Template:
        if source not in self._path_templates:
            self._path_templates[source] = self.env.from_string(source)
        return self._path_templates[source]
