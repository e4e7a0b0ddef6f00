"""The bridge between copier and the compiler: a Jinja extension the blueprint loads.

copier.yml lists ``halgen.compiler.extension.HalgenExtension`` in ``_jinja_extensions``
(so halgen must be importable where copier runs, and copier needs ``--trust``).
Templates call ``stack()`` to get the typed model of the answers they are
rendered with; question validators call ``halgen_field_error(name)``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

from halgen.compiler import alerts, cloudinit, crossfield, schema
from halgen.compiler.answers import FrozenMap, freeze, thaw
from halgen.compiler.firewall import FirewallRule, cloud_firewall, node_rules
from halgen.compiler.model import LINODE, Node, Stack, Target
from halgen.compiler.pipeline import stack_from
from halgen.compiler.resources import blueprint_version
from halgen.errors import AnswersError


class HalgenExtension(Extension):
    def __init__(self, environment: Environment):
        super().__init__(environment)
        environment.globals["stack"] = _stack
        environment.globals["halgen_field_error"] = _field_error
        environment.globals["firewall_rules"] = _firewall_rules
        environment.globals["cloud_firewall"] = _cloud_firewall
        environment.globals["cloud_init"] = _cloud_init
        environment.globals["halgen_endpoint_for"] = crossfield.endpoint_for
        environment.globals["alert_groups"] = alerts.groups
        environment.globals["alert_test_files"] = alerts.promtool_files
        environment.globals["alert_runbooks"] = alerts.runbooks


def _answers_in(context: Context) -> dict[str, Any]:
    return {name: context[name] for name in schema.fields() if name in context}


# halgen's own engine passes the render target (a rehearsal) under this name;
# copier never does, so copier renders always target Linode.
TARGET_VARIABLE = "_halgen_target"


# halgen's engine derives the stack once and passes it; copier's renders derive it here.
STACK_VARIABLE = "_halgen_stack"


@pass_context
def _stack(context: Context) -> Stack:
    given: Stack | None = context.get(STACK_VARIABLE)
    if given is not None:
        return given
    # Called once per rendered file (and path): validate each answer set once.
    target = context.get(TARGET_VARIABLE) or LINODE
    version = blueprint_version(Path(str(context["_copier_conf"]["src_path"])))
    return _stack_for(freeze(_answers_in(context)), target, version)


@lru_cache(maxsize=8)
def _stack_for(answers: FrozenMap[str, Any], target: Target, version: str) -> Stack:
    try:
        return stack_from(thaw(answers), file="copier answers", target=target, version=version)
    except AnswersError as err:
        raise _refusal(thaw(answers), err) from None


def _refusal(answers: dict[str, Any], err: AnswersError) -> Exception:
    """copier's UserMessageError (copier shows it and stops) carrying the refused answers,
    so 'halgen new' can keep them for the next try. copier is imported only here: it is
    slow to import and 'halgen render' never needs it."""
    from copier.errors import UserMessageError

    refused = UserMessageError("halgen: the answers are not valid:\n" + str(err))
    refused.answers = answers  # type: ignore[attr-defined]
    return refused


@pass_context
def _field_error(context: Context, name: str) -> str:
    """Copier validator: '' when the field's answer is valid, else a message: the schema's
    in words, then every cross-field rule that reads only the questions asked so far (the
    schema's order is copier's), so a bad subnet is refused at its prompt, not at the end.
    A field this halgen does not know (an older blueprint's) is not checked here."""
    fields = list(schema.fields())
    if name not in context or name not in fields:
        return ""
    message = schema.field_message(name, context[name])
    if message:
        return message
    asked = {f: context[f] for f in fields[: fields.index(name) + 1] if f in context}
    if any(schema.field_message(f, v) for f, v in asked.items()):
        return ""  # an earlier answer is off: its own prompt said so
    return crossfield.early_violation(name, asked)


@pass_context
def _firewall_rules(context: Context, node: Node) -> list[FirewallRule]:
    return node_rules(_stack(context), node)


@pass_context
def _cloud_firewall(context: Context, role: str) -> dict[str, Any]:
    return cloud_firewall(_stack(context), role)


@pass_context
def _cloud_init(context: Context, node: Node) -> str:
    """The readable part of the node's user-data (``halgen build`` adds its files)."""
    return cloudinit.readable(_stack(context), node)
