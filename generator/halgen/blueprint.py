"""The bridge between copier and the compiler: a Jinja extension the blueprint loads.

copier.yml lists ``halgen.blueprint.HalgenExtension`` in ``_jinja_extensions``
(so halgen must be importable where copier runs, and copier needs ``--trust``).
Templates call ``stack()`` to get the typed model of the answers they are
rendered with; question validators call ``halgen_field_error(name)``.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context
from jsonschema import Draft202012Validator

from . import schema
from .compiler import stack_from
from .model import LINODE, Stack, Target
from .problems import AnswersError


class HalgenExtension(Extension):
    def __init__(self, environment: Environment):
        super().__init__(environment)
        environment.globals["stack"] = _stack
        environment.globals["halgen_field_error"] = _field_error


def _answers_in(context: Context) -> dict[str, Any]:
    return {name: context[name] for name in schema.fields() if name in context}


# halgen's own engine passes the render target (a rehearsal) under this name;
# copier never does, so copier renders always target Linode.
TARGET_VARIABLE = "_halgen_target"


@pass_context
def _stack(context: Context) -> Stack:
    # Called once per rendered file (and path): validate each answer set once.
    target = context.get(TARGET_VARIABLE) or LINODE
    return _stack_for(json.dumps(_answers_in(context), sort_keys=True), target)


@lru_cache(maxsize=8)
def _stack_for(canonical: str, target: Target) -> Stack:
    try:
        return stack_from(json.loads(canonical), file="copier answers", target=target)
    except AnswersError as err:
        from copier.errors import UserMessageError

        raise UserMessageError("halgen: the answers are not valid:\n" + str(err)) from None


@pass_context
def _field_error(context: Context, name: str) -> str:
    """Copier validator: '' when the field's answer is valid, else a message."""
    if name not in context:
        return ""
    errors = sorted(_field_validator(name).iter_errors(context[name]), key=lambda e: list(e.absolute_path))
    return errors[0].message if errors else ""


@cache
def _field_validator(name: str) -> Draft202012Validator:
    root = schema.schema()
    return Draft202012Validator({"$defs": root["$defs"], **root["properties"][name]})
