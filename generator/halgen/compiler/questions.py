"""copier.yml is generated from the schema: the schema is the one source of truth.

``python -m halgen.compiler.questions`` rewrites copier.yml; a test fails when it drifts.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from ruamel.yaml import YAML

from halgen.compiler import resources, schema

SETTINGS_HEADER = """\
# halgen blueprint for copier. GENERATED from schema/answers.schema.json by
# `python -m halgen.compiler.questions`: edit the schema, not the questions below.
# Needs halgen importable where copier runs (pipx inject copier halgen) and --trust.
_min_copier_version: "9.4.0"
_subdirectory: blueprints/stack
_answers_file: .copier-answers.yml
_jinja_extensions:
  - halgen.compiler.extension.HalgenExtension
_message_after_copy: |
  Your stack is in {{ _copier_conf.dst_path }}; its README.md shows the topology and the next steps.
"""

_COPIER_TYPES = {"string": "str", "integer": "int", "boolean": "bool", "number": "float"}


def question(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec.get("type", "string")
    q: dict[str, Any] = {"type": _COPIER_TYPES.get(kind, "yaml"), "help": spec["description"]}
    if "enum" in spec:
        q["choices"] = list(spec["enum"])
    q["default"] = spec["default"]
    q["validator"] = "{{ halgen_field_error('" + name + "') }}"
    return q


def questions() -> dict[str, dict[str, Any]]:
    return {name: question(name, spec) for name, spec in schema.fields().items()}


def render_copier_yml() -> str:
    from halgen.compiler.migrate import RENAMES, migration_entry

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    migrations = [migration_entry(*rename) for rename in RENAMES]
    yaml.dump({"_migrations": migrations, **questions()}, out)
    return SETTINGS_HEADER + "\n" + out.getvalue()


def main() -> int:
    target = resources.template_root() / "copier.yml"
    text = render_copier_yml()
    if "--check" in sys.argv[1:]:
        return 0 if target.read_text(encoding="utf-8") == text else 1
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
