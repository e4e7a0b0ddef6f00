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


# Questions without "x-basic" in the schema are asked only with 'halgen new --advanced'
# (or copier's --data _halgen_advanced=true); otherwise they take their defaults, which
# copier records in .copier-answers.yml like any answer.
ASK_ADVANCED = "{{ _halgen_advanced | default(false) }}"


def question(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec.get("type", "string")
    q: dict[str, Any] = {"type": _COPIER_TYPES.get(kind, "yaml"), "help": help_text(spec)}
    if "enum" in spec:
        q["choices"] = list(spec["enum"])
    # A default that follows earlier answers at the prompt (the schema's own stays the
    # default of answer files and of --defaults without them).
    q["default"] = spec.get("x-copier-default", spec["default"])
    q["validator"] = "{{ halgen_field_error('" + name + "') }}"
    if not spec.get("x-basic"):
        q["ask"] = ASK_ADVANCED
    return q


def help_text(spec: dict[str, Any]) -> str:
    """The field's description and its bounds in words (never a raw pattern)."""
    words = [spec["description"].rstrip(".") + "."]
    kind = spec.get("type")
    if kind == "integer" and "minimum" in spec and "maximum" in spec:
        words.append(f"A whole number from {spec['minimum']} to {spec['maximum']}.")
    elif kind == "string" and "x-hint" in spec:
        words.append(f"Form: {spec['x-hint']}.")
    elif kind == "array":
        items = schema.resolve(spec.get("items", {}))
        low, high = spec.get("minItems", 0), spec.get("maxItems")
        count = f"{low} to {high}" if high else f"at least {low}"
        what = items.get("x-hint", "entries with name and ssh_keys" if items.get("type") == "object" else "items")
        words.append(f"A list of {count}: {what}.")
    elif kind == "object":
        words.append("A mapping of name: value (YAML or JSON).")
    return " ".join(words)


def questions() -> dict[str, dict[str, Any]]:
    return {name: question(name, spec) for name, spec in schema.fields().items()}


def render_copier_yml() -> str:
    from halgen.compiler.migrate import KEEPS, RENAMES, keep_entry, migration_entry

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    migrations = [migration_entry(*rename) for rename in RENAMES] + [keep_entry(*kept) for kept in KEEPS]
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
