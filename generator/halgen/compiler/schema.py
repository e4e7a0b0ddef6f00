"""The JSON Schema of the answers: defaults, docs and validation into Problems."""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from halgen.compiler import resources
from halgen.compiler.loader import LoadedAnswers
from halgen.errors import FieldPath, Problem


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = resources.load_json(resources.schema_path())
    return loaded


@cache
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


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
    problems: list[Problem] = []
    for error in _validator().iter_errors(loaded.data):
        problems.extend(_to_problems(loaded, error))
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
