"""The rule modules; importing this package registers every rule."""

from halgen.lint.rules import (  # noqa: F401
    consistency,
    exposure,
    failover,
    meta,
    monitoring,
    operations,
    parse,
    sandbox,
    security,
    tools,
    transit_pg,
    transit_redis,
)
