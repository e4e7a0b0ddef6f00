"""The rule modules; importing this package registers every rule."""

from halgen.lint.rules import consistency, exposure, meta, operations, parse, sandbox, security, tools, transit_pg  # noqa: F401
