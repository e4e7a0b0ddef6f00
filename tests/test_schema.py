"""The schema is complete, strict, and the one source of copier's questions."""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML

from halgen.compiler import questions, resources, schema
from halgen.compiler.loader import from_mapping
from halgen.compiler.pipeline import complete_answers

from conftest import REPO, halgen


def _objects(node: Any, path: str = "#") -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((path, node))
        for key, value in node.items():
            found.extend(_objects(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_objects(value, f"{path}/{i}"))
    return found


def test_every_object_forbids_unknown_keys() -> None:
    for path, obj in _objects(schema.schema()):
        assert "additionalProperties" in obj, path
        assert obj["additionalProperties"] is False or isinstance(obj["additionalProperties"], dict), path


def test_every_field_is_documented_typed_and_defaulted() -> None:
    for name, spec in schema.fields().items():
        assert spec.get("description"), name
        assert spec.get("type"), name
        assert "default" in spec, name
        if spec["type"] == "string":
            assert "enum" in spec or "pattern" in spec, f"{name}: strings must be pattern-restricted"
        if spec["type"] == "integer":
            assert "enum" in spec or ("minimum" in spec and "maximum" in spec), name


def test_string_items_are_pattern_restricted() -> None:
    def strings(node: Any, path: str) -> list[tuple[str, dict]]:
        out = []
        if isinstance(node, dict):
            if "$ref" in node:
                node = {**schema.resolve(node)}
            if node.get("type") == "string":
                out.append((path, node))
            for key in ("items", "additionalProperties", "properties"):
                sub = node.get(key)
                if isinstance(sub, dict) and key == "properties":
                    for k, v in sub.items():
                        out.extend(strings(v, f"{path}.{k}"))
                elif isinstance(sub, dict):
                    out.extend(strings(sub, f"{path}[{key}]"))
        return out

    for name, spec in schema.schema()["properties"].items():
        for path, s in strings(spec, name):
            assert "pattern" in s or "enum" in s, path


def test_defaults_are_valid_and_complete() -> None:
    complete = complete_answers(from_mapping({}))
    assert complete.to_dict() == schema.defaults()


def test_copier_questions_match_schema() -> None:
    on_disk = YAML(typ="safe").load((REPO / "copier.yml").read_text())
    generated = questions.questions()
    asked = {k: v for k, v in on_disk.items() if not k.startswith("_")}
    assert list(asked) == list(generated), "copier.yml questions drifted from the schema: python -m halgen.compiler.questions"
    assert asked == generated
    assert (REPO / "copier.yml").read_text() == questions.render_copier_yml()


def test_copier_yml_points_into_blueprints() -> None:
    settings = YAML(typ="safe").load((REPO / "copier.yml").read_text())
    assert settings["_subdirectory"] == "blueprints/stack"
    assert (resources.template_root() / settings["_subdirectory"]).is_dir()


def test_schema_command_prints_valid_json() -> None:
    import json

    result = halgen("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == schema.schema()


@pytest.mark.parametrize("field, words", [("lb_keepalive", "default:    0"), ("admins.name", "Login name"),
                                          ("pg_version", "one of:     14, 15, 16, 17")])
def test_explain(field: str, words: str) -> None:
    result = halgen("explain", field)
    assert result.returncode == 0
    assert words in result.stdout


def test_explain_unknown_suggests() -> None:
    result = halgen("explain", "lb_keepaliv")
    assert result.returncode == 2
    assert "lb_keepalive" in result.stderr


def test_help_and_version() -> None:
    result = halgen("--help")
    assert result.returncode == 0
    for command in ("new", "render", "schema", "explain", "check"):
        assert command in result.stdout
    version = halgen("--version")
    assert version.returncode == 0 and "0.1.0" in version.stdout
