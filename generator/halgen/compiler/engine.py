"""halgen's own renderer of a blueprint, used by ``halgen render`` and ``halgen build``.

copier stays the engine of ``halgen new`` and ``copier update``; it spends a few
milliseconds of bookkeeping per output file, which a 200-server stack (400+
files) turns into seconds. This module renders the same blueprint with the same
Jinja set-up, and takes every setting it shares with copier from ``copier.yml``
(``_subdirectory``, ``_templates_suffix``, ``_exclude``, ``_answers_file``,
``_jinja_extensions``, ``_envops``) with copier's defaults, so the two cannot
drift apart. The conventions it implements are the ones the blueprint uses:
Jinja in path parts, ``{% yield x from xs %}...{% endyield %}`` in a path part
(one output per item), an empty part skipping the file, and source file modes.
``tests/test_copier.py`` proves both engines give identical trees on every golden case.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment
from ruamel.yaml import YAML

from halgen.compiler.answers import Answers
from halgen.compiler.extension import STACK_VARIABLE, TARGET_VARIABLE
from halgen.compiler.model import LINODE, Target, derive
from halgen.compiler.resources import blueprint_version

COPIER_FILE = "copier.yml"
# copier's own defaults for the settings below (copier/_template.py, _main.py).
COPIER_DEFAULT_EXCLUDE = ("copier.yaml", "copier.yml", "~*", "*.py[co]", "__pycache__", ".git", ".DS_Store", ".svn")
COPIER_DEFAULT_EXTENSIONS = ("jinja2_ansible_filters.AnsibleCoreFiltersExtension",)
COPIER_DEFAULT_ENVOPS = {"keep_trailing_newline": True}


@dataclass(frozen=True)
class CopierSettings:
    """What copier.yml says about rendering, with copier's defaults filled in."""

    subdirectory: str
    suffix: str
    exclude: tuple[str, ...]
    answers_file: str
    extensions: tuple[str, ...]
    envops: tuple[tuple[str, Any], ...]

    @classmethod
    def read(cls, template_root: Path) -> CopierSettings:
        data = YAML(typ="safe", pure=True).load((template_root / COPIER_FILE).read_text(encoding="utf-8")) or {}
        subdirectory = str(data.get("_subdirectory", ""))
        at_root = Path(subdirectory) == Path()
        return cls(
            subdirectory=subdirectory,
            suffix=str(data.get("_templates_suffix", ".jinja")),
            exclude=tuple(data.get("_exclude", COPIER_DEFAULT_EXCLUDE if at_root else ())),
            answers_file=str(data.get("_answers_file", ".copier-answers.yml")),
            extensions=(*COPIER_DEFAULT_EXTENSIONS, *data.get("_jinja_extensions", ())),
            envops=tuple(sorted({**COPIER_DEFAULT_ENVOPS, **data.get("_envops", {})}.items())),
        )


@cache
def copier_settings(template_root: Path) -> CopierSettings:
    return CopierSettings.read(template_root)


class YieldExtension(Extension):
    """``{% yield VAR from EXPR %}BODY{% endyield %}`` in a path part.

    Rendered once without VAR, the tag outputs nothing and records (VAR, the
    items of EXPR) on the environment; the engine then renders the part once per
    item with VAR bound, and the tag outputs BODY."""

    tags = {"yield"}

    def __init__(self, environment: Environment):
        super().__init__(environment)
        environment.extend(halgen_yield=None)

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        target = parser.parse_assign_target(name_only=True)
        parser.stream.expect("name:from")
        items = parser.parse_expression()
        body = parser.parse_statements(("name:endyield",), drop_needle=True)
        bound = nodes.Test(nodes.Name(target.name, "load"), "defined", [], [], None, None)
        call = self.call_method("_record", [nodes.Const(target.name), items, bound])
        return nodes.CallBlock(call, [], [], body, lineno=lineno)

    def _record(self, name: str, items: Iterable[Any] | None, bound: bool, caller: Any) -> str:
        if bound:
            return str(caller())
        self.environment.halgen_yield = (name, list(items or ()))  # type: ignore[attr-defined]
        return ""


Output = tuple[Path, str, int]  # (relative path, content, mode)


class Blueprint:
    def __init__(self, root: Path, settings: CopierSettings):
        """``root``: a blueprint folder; ``settings``: its copier settings."""
        self.root = root
        self.settings = settings
        extensions = [_load(name) for name in settings.extensions]
        self.env = SandboxedEnvironment(loader=FileSystemLoader(str(root)), extensions=[*extensions, YieldExtension],
                                        **dict(settings.envops))
        self._path_templates: dict[str, Template] = {}

    @classmethod
    def of(cls, template_root: Path, folder: str | None = None) -> Blueprint:
        """The blueprint copier.yml points at (``_subdirectory``), or a sibling ``folder``
        rendered with the same settings (the secrets blueprint)."""
        settings = copier_settings(template_root)
        sub = Path(template_root / settings.subdirectory)
        return cls(sub if folder is None else sub.parent / folder, settings)

    def render(self, answers: Answers, target: Target = LINODE,
               extra: dict[str, Any] | None = None) -> Iterator[Output]:
        """Yield every output file for complete, valid answers."""
        plain = answers.to_dict()  # what copier's templates see
        context = {
            **plain,
            "_copier_answers": dict(sorted(plain.items())),
            "_copier_conf": {"answers_file": self.settings.answers_file, "src_path": self.root.parent.parent},
            TARGET_VARIABLE: target,
            STACK_VARIABLE: derive(answers, target, blueprint_version(self.root.parent.parent)),
            **(extra or {}),
        }
        for source in self._sources():
            yield from self._render_source(source, context)

    def _render_source(self, source: Path, context: dict[str, Any]) -> Iterator[Output]:
        relsource = source.relative_to(self.root)
        templated = source.name.endswith(self.settings.suffix)
        parts = relsource.with_name(source.name.removesuffix(self.settings.suffix)).parts if templated \
            else relsource.parts
        # Executable or not, as the blueprint says; never the checkout's umask (it would
        # reach the repo and the user-data tar and differ between machines).
        mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
        for out_parts, ctx in self.expand(parts, context):
            if templated:
                content = self.env.get_template(relsource.as_posix()).render(ctx)
            else:
                content = source.read_text(encoding="utf-8")
            yield Path(*out_parts), content, mode

    def _sources(self) -> list[Path]:
        exclude = self.settings.exclude
        return [path for path in sorted(self.root.rglob("*"))
                if path.is_file() and not any(fnmatch.fnmatch(part, pattern)
                                              for part in path.relative_to(self.root).parts for pattern in exclude)]

    def expand(self, parts: tuple[str, ...], ctx: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """Render path parts left to right; a part with a yield forks the context per item,
        and a part that renders empty drops the file."""
        if not parts:
            yield (), ctx
            return
        head, rest = parts[0], parts[1:]
        if "{{" not in head and "{%" not in head:
            forks = [(head, ctx)]
        else:
            template = self._template(head)
            self.env.halgen_yield = None  # type: ignore[attr-defined]
            rendered = template.render(ctx)
            recorded = self.env.halgen_yield  # type: ignore[attr-defined]
            if recorded is None:
                forks = [(rendered, ctx)]
            else:
                name, items = recorded
                forks = [(template.render(inner), inner) for inner in ({**ctx, name: item} for item in items)]
        for part, part_ctx in forks:
            if part:
                for tail, tail_ctx in self.expand(rest, part_ctx):
                    yield (part, *tail), tail_ctx

    def _template(self, source: str) -> Template:
        if source not in self._path_templates:
            self._path_templates[source] = self.env.from_string(source)
        return self._path_templates[source]


def _load(dotted: str) -> type[Extension]:
    module, _, name = dotted.rpartition(".")
    extension: type[Extension] = getattr(importlib.import_module(module), name)
    return extension
