"""The typed answers match the JSON Schema field for field, and are frozen and hashable."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from halgen.compiler import answers as answers_module
from halgen.compiler import pipeline, schema
from halgen.compiler.answers import Admin, Answers, FrozenMap

from conftest import GOLDEN, golden_cases

_SCALARS = {"string": str, "integer": int, "boolean": bool}


def _expected_type(spec: dict) -> object:
    """The Python type a schema field becomes in Answers."""
    kind = spec["type"]
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        items = schema.resolve(spec["items"])
        return tuple[Admin, ...] if items["type"] == "object" else tuple[_SCALARS[items["type"]], ...]
    values = schema.resolve(spec["additionalProperties"])["type"]
    value_type = str | int if values == ["string", "integer"] else _SCALARS[values]
    return FrozenMap[str, value_type]


def test_fields_are_the_schema_properties_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Answers)] == list(schema.fields())


@pytest.mark.parametrize("name", list(schema.fields()))
def test_each_field_has_its_schema_type(name: str) -> None:
    hints = typing.get_type_hints(Answers, vars(answers_module))
    assert hints[name] == _expected_type(schema.fields()[name])


def test_admin_has_the_schema_item_properties() -> None:
    items = schema.resolve(schema.fields()["admins"]["items"])
    assert [f.name for f in dataclasses.fields(Admin)] == list(items["properties"])


@pytest.mark.parametrize("case", golden_cases())
def test_answers_round_trip_and_hash(case: str) -> None:
    answers = pipeline.load_answers(GOLDEN / case / "answers.yml")
    again = Answers.from_dict(answers.to_dict())
    assert again == answers and hash(again) == hash(answers)
    assert {answers: 1}[again] == 1  # usable as a cache key as it is


def test_answers_are_frozen() -> None:
    answers = pipeline.default_answers()
    with pytest.raises(dataclasses.FrozenInstanceError):
        answers.project = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        answers.pg_settings["work_mem"] = "1MB"  # type: ignore[index]
    assert isinstance(answers.domains, tuple) and isinstance(answers.admins[0].ssh_keys, tuple)


def test_replace_freezes_new_values() -> None:
    changed = pipeline.default_answers().replace(node_addresses={"app1": "10.0.0.77"})
    assert isinstance(changed.node_addresses, FrozenMap) and hash(changed)
