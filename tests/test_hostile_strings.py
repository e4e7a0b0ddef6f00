"""No string answer can carry a newline, a carriage return, a tab, a NUL or an escape
sequence into a rendered file: every string, list item and mapping key in the schema is
tried with each, and each is refused with its line and field (exit 2, nothing rendered)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from halgen.compiler import pipeline, schema
from halgen.errors import AnswersError, FieldPath

from conftest import halgen

BAD = {"newline": "\n", "cr": "\r", "tab": "\t", "nul": "\x00", "escape": "\x1b[31m", "line-separator": "\u2028"}


def _string_places() -> list[tuple[FieldPath, dict[str, Any]]]:
    """(path to a string in a complete answer document, that document) for every string the
    schema allows: top-level strings, list items, nested properties, mapping keys and values."""
    defaults = schema.defaults()
    places: list[tuple[FieldPath, dict[str, Any]]] = []
    for name, spec in schema.fields().items():
        kind = spec["type"]
        if kind == "string":
            places.append(((name,), {name: defaults[name] or "x"}))
        elif kind == "array":
            items = schema.resolve(spec["items"])
            if items["type"] == "string":
                places.append(((name, 0), {name: defaults[name][:1] or ["x"]}))
            else:  # admins: a list of mappings
                admin = defaults[name][0]
                places.append(((name, 0, "name"), {name: [admin]}))
                places.append(((name, 0, "ssh_keys", 0), {name: [admin]}))
        elif kind == "object":
            example = {"node_addresses": {"app1": "10.0.0.77"}, "lb_weights": {"app1": 2},
                       "pg_settings": {"work_mem": "8MB"}}[name]
            key = next(iter(example))
            places.append(((name, key), {name: example}))  # the value (strings only below)
            places.append(((name, "<key>"), {name: example}))
    return places


def _inject(document: dict[str, Any], path: FieldPath, bad: str) -> tuple[dict[str, Any], FieldPath]:
    """The document with ``bad`` appended to the string at ``path`` (or to the mapping key)."""
    doc = json.loads(json.dumps(document))
    *parents, last = path
    holder: Any = doc
    for part in parents:
        holder = holder[part]
    if last == "<key>":
        key = next(iter(holder))
        holder[key + bad] = holder.pop(key)
        return doc, (*parents, key + bad)
    if not isinstance(holder[last], str):
        holder[last] = "x"
    holder[last] += bad
    return doc, path


def _yaml(doc: dict[str, Any]) -> str:
    """One field per line, every value JSON (valid YAML): field N is on line N."""
    return "".join(f"{json.dumps(k)}: {json.dumps(v)}\n" for k, v in doc.items())


PLACES = _string_places()


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
@pytest.mark.parametrize(("path", "document"), PLACES, ids=[".".join(map(str, p)) for p, _ in PLACES])
def test_control_characters_are_refused_with_line_and_field(path: FieldPath, document: dict[str, Any], bad: str,
                                                             tmp_path: Path) -> None:
    doc, where = _inject(document, path, BAD[bad])
    answers = tmp_path / "answers.yml"
    answers.write_text(_yaml(doc), encoding="utf-8")
    with pytest.raises(AnswersError) as caught:
        pipeline.load_answers(answers)
    problem = next(p for p in caught.value.problems if p.field == where)
    assert problem.line == 1 + list(doc).index(where[0])
    line = problem.format()
    assert "\n" not in line and "\x1b" not in line and "\x00" not in line and "\u2028" not in line


@pytest.mark.parametrize("bad", ["newline", "escape"])
def test_the_cli_refuses_them_in_one_line_and_writes_nothing(bad: str, tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text(_yaml({"admin_cidrs": ["198.51.100.0/24" + BAD[bad]], "domains\x1b": ["a.example"]}))
    result = halgen("render", str(answers), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "out").exists()
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{answers}:") for line in lines), lines


def _with_trailing_newline(value: Any) -> Any | None:
    """The value with a newline after its first non-empty string, or None if it has none."""
    if isinstance(value, str):
        return value + "\n" if value else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            changed = _with_trailing_newline(item)
            if changed is not None:
                return [*value[:i], changed, *value[i + 1:]]
    if isinstance(value, dict):
        for key, item in value.items():
            changed = _with_trailing_newline(item)
            if changed is not None:
                return {**value, key: changed}
    return None


NEWLINE_CASES = [(name, changed) for name, default in schema.defaults().items()
                 if (changed := _with_trailing_newline(default)) is not None]


@pytest.mark.parametrize(("name", "value"), NEWLINE_CASES, ids=[name for name, _ in NEWLINE_CASES])
def test_every_pattern_matches_the_whole_string(name: str, value: Any) -> None:
    """Python's '$' also matches before a final newline; the schema's validator must not
    (checked on the schema alone, without the control-character guard in front of it)."""
    validator = schema.field_validator(name)
    assert validator.is_valid(schema.defaults()[name])
    assert not validator.is_valid(value)


@pytest.mark.parametrize(("field", "value"), [("app_servers", 3.0), ("app_workers", 5.0), ("pg_version", 15.0),
                                              ("lb_count", True), ("app_port", "5000")])
def test_integers_are_whole_numbers_only(field: str, value: object, tmp_path: Path) -> None:
    answers = tmp_path / "answers.yml"
    answers.write_text(f"{field}: {json.dumps(value)}\n")
    result = halgen("check", str(answers))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"{answers}:1: {field}: must be a whole number (got {json.dumps(value)})"
