"""The JSON Schema of the answers: defaults, docs and validation into Problems."""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from halgen.compiler import resources
from halgen.compiler.loader import LoadedAnswers, from_mapping
from halgen.errors import FieldPath, Problem, dotted


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = resources.load_json(resources.schema_path())
    return loaded


def _whole_pattern(validator: Any, pattern: str, instance: Any, spec: dict[str, Any]) -> Iterator[ValidationError]:
    """``pattern`` matched against the whole string: JSON Schema's search with ``^...$`` lets
    Python's ``$`` match before a final newline, which would let "198.51.100.0/24\\n" through."""
    if isinstance(instance, str) and not re.fullmatch(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _is_integer(_: Any, instance: Any) -> bool:
    """Whole numbers only: 3.0 is refused (JSON Schema would accept it) rather than becoming
    '--workers 3.0' or /etc/postgresql/15.0/ in a rendered file."""
    return isinstance(instance, int) and not isinstance(instance, bool)


# The schema's own validator class with halgen's two stricter readings.
StrictValidator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _whole_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def _validator() -> Any:
    Draft202012Validator.check_schema(schema())
    return StrictValidator(schema())


def field_message(name: str, value: Any) -> str:
    """The first problem with one top-level answer, in the words 'halgen check' uses
    ('' when it is valid): copier's question validators show it at the prompt."""
    loaded = from_mapping({name: value})
    problems = _control_characters(loaded, {name: value}, ())
    for error in sorted(field_validator(name).iter_errors(value), key=lambda e: list(e.absolute_path)):
        error.path.appendleft(name)  # as if validated inside the document
        problems += _to_problems(loaded, error)
    if not problems:
        return ""
    first = problems[0]
    return first.message if first.field in (None, (name,)) else f"{dotted(first.field)}: {first.message}"


def field_validator(name: str) -> Any:
    """A validator for one top-level field (copier's question validators use it)."""
    root = schema()
    return StrictValidator({"$defs": root["$defs"], **root["properties"][name]})


@cache
def fields() -> dict[str, dict[str, Any]]:
    """Top-level answer fields in schema order, each with ``$ref`` resolved."""
    return {name: resolve(spec) for name, spec in schema()["properties"].items()}


def resolve(spec: dict[str, Any]) -> dict[str, Any]:
    """Merge a local ``$ref`` into the field's own keywords (the field's win)."""
    ref = spec.get("$ref")
    if not ref:
        return spec
    target: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = {**resolve(target), **{k: v for k, v in spec.items() if k != "$ref"}}
    return merged


def defaults() -> dict[str, Any]:
    """A fresh copy of every field's default (callers may mutate it)."""
    return {name: copy.deepcopy(spec["default"]) for name, spec in fields().items()}


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    return {**defaults(), **copy.deepcopy(data)}


def validate(loaded: LoadedAnswers) -> list[Problem]:
    problems = _control_characters(loaded, loaded.data, ())
    refused = [p.field for p in problems if p.field is not None]
    for error in _validator().iter_errors(loaded.data):
        for found in _to_problems(loaded, error):  # one problem per place: control characters first
            if found.field is None or not any(found.field[:len(r)] == r for r in refused):
                problems.append(found)
    return problems


# C0 and C1 controls, DEL, and the invisible characters that reorder or split lines when shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _control_characters(loaded: LoadedAnswers, value: Any, path: FieldPath) -> list[Problem]:
    """Every string, list item and mapping key in the answers, checked for control characters."""
    if isinstance(value, str):
        found = _CONTROL.search(value)
        if found:
            return [Problem(loaded.file, loaded.line_of(path), f"contains a control character ({found.group()!r}); "
                            "answers are single-line text", path, value)]
        return []
    problems: list[Problem] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _CONTROL.search(key):
                problems.append(Problem(loaded.file, loaded.line_of(path + (key,)),
                                        "a field name contains a control character", path + (key,)))
            else:
                problems += _control_characters(loaded, item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += _control_characters(loaded, item, path + (index,))
    return problems


def _to_problems(loaded: LoadedAnswers, error: ValidationError) -> list[Problem]:
    path: FieldPath = tuple(error.absolute_path)
    line = loaded.line_of(path)
    kw, instance, expected = error.validator, error.instance, error.validator_value
    if kw == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        out = []
        for key in sorted(k for k in instance if k not in known):
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else "; see 'halgen schema' for the fields"
            out.append(Problem(loaded.file, loaded.line_of(path + (key,)), f"unknown field{hint}", path + (key,)))
        return out
    if "propertyNames" in error.schema_path:  # a bad key in a name -> value mapping
        key = str(instance)
        hint = error.schema.get("x-hint", "a valid name")
        where = path + (key,)
        return [Problem(loaded.file, loaded.line_of(where), f"is not allowed as a name: must be {hint}", where)]
    if kw == "required":
        missing = [k for k in expected if k not in instance]
        return [Problem(loaded.file, line, "is required", path + (k,)) for k in missing]
    message = _MESSAGES.get(kw, _default_message)(error, expected)
    return [Problem(loaded.file, line, message, path, instance)]


def _default_message(error: ValidationError, _: Any) -> str:
    return str(error.message)


def _type_message(_: ValidationError, expected: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "text", "integer": "a whole number",
             "boolean": "true or false", "number": "a number"}
    kinds = expected if isinstance(expected, list) else [expected]
    return "must be " + " or ".join(names.get(str(k), str(k)) for k in kinds)


def _pattern_message(error: ValidationError, expected: Any) -> str:
    hint = error.schema.get("x-hint")
    return f"is not allowed: must be {hint}" if hint else f"is not allowed: must match {expected}"


_MESSAGES: dict[str, Callable[[ValidationError, Any], str]] = {
    "type": _type_message,
    "pattern": _pattern_message,
    "enum": lambda e, x: "must be one of: " + ", ".join(str(v) for v in x),
    "minimum": lambda e, x: f"must be at least {x}",
    "maximum": lambda e, x: f"must be at most {x}",
    "minItems": lambda e, x: f"needs at least {x} item(s)",
    "maxItems": lambda e, x: f"takes at most {x} items",
    "maxProperties": lambda e, x: f"takes at most {x} entries",
    "minLength": lambda e, x: f"must be at least {x} characters long",
    "maxLength": lambda e, x: f"must be at most {x} characters long",
    "uniqueItems": lambda e, x: "must not repeat an item",
}


def explain(field: str) -> str:
    """Human docs for one field (``lb_keepalive`` or ``admins.name``)."""
    head, _, rest = field.partition(".")
    specs = fields()
    if head not in specs:
        close = difflib.get_close_matches(head, list(specs), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown field '{field}'.{hint}")
    spec = specs[head]
    if rest:
        items = resolve(spec.get("items", {}))
        sub = items.get("properties", {}).get(rest)
        if sub is None:
            raise KeyError(f"unknown field '{field}'")
        spec = resolve(sub)
    lines = [field, "", spec.get("description", ""), "", f"{'type:':<12}{_kind(spec)}"]
    if "x-hint" in spec:
        lines.append(f"{'form:':<12}{spec['x-hint']}")
    for key, label in (("enum", "one of"), ("minimum", "minimum"), ("maximum", "maximum"),
                       ("minItems", "min items"), ("maxItems", "max items"), ("maxLength", "max length"),
                       ("pattern", "pattern")):
        if key in spec:
            value = ", ".join(map(str, spec[key])) if key == "enum" else spec[key]
            lines.append(f"{label + ':':<12}{value}")
    if "default" in spec:
        lines.append(f"{'default:':<12}{json.dumps(spec['default'])}")
    return "\n".join(lines) + "\n"


def _kind(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_kind(resolve(spec.get('items', {})))}"
    if kind == "object" and "additionalProperties" in spec and isinstance(spec["additionalProperties"], dict):
        return f"mapping of name -> {_kind(resolve(spec['additionalProperties']))}"
    return str(kind)
