"""The rule modules; importing this package registers every rule."""

from . import consistency, meta, operations, parse, security, tools  # noqa: F401
