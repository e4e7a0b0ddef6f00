"""redis.conf and sentinel.conf as Redis reads them."""

from __future__ import annotations

import functools
import posixpath
from dataclasses import dataclass, field, replace

from halgen.formats import redisconf
from halgen.lint.effective.paths import Unseen, build_template, empty_glob_ok, matches, on_node, split
from halgen.lint.repo import Repo


@dataclass
class RedisConfig:
    # In the order Redis applies them; those of a file `halgen build` writes have no file.
    directives: list[redisconf.Directive] = field(default_factory=list)
    secret_includes: list[redisconf.Directive] = field(default_factory=list)  # of files `halgen build` writes
    unseen: list[Unseen] = field(default_factory=list)

    def last(self, name: str) -> redisconf.Directive | None:
        return redisconf.last(self.directives, name)

    def all(self, name: str) -> list[redisconf.Directive]:
        return [d for d in self.directives if d.name == name]


@functools.cache
def redis(repo: Repo, rel: str) -> RedisConfig:
    """redis.conf or sentinel.conf with its includes (globs too) and aclfile read in place."""
    config = RedisConfig()
    _redis_read(repo, rel, config, ())
    return config


def _redis_read(repo: Repo, rel: str, config: RedisConfig, chain: tuple[str, ...]) -> None:
    node, path = split(rel)
    for directive in repo.redis(rel)[0]:
        directive = replace(directive, file=rel)
        config.directives.append(directive)
        if directive.name not in {"include", "aclfile"} or not directive.args:
            continue
        target = on_node(directive.args[0], posixpath.dirname(path))
        found = matches(repo, node, target)
        template = build_template(target)
        if template is not None:  # read in place: what halgen build writes there, values left out
            config.secret_includes.append(directive)
            config.directives.extend(replace(d, file="") for d in redisconf.parse(template)[0])
        elif not found and not (directive.name == "include" and empty_glob_ok(repo, node, target)):
            config.unseen.append(Unseen(rel, directive.line, directive.name, target))
        for included in found:
            if included not in (*chain, rel):
                _redis_read(repo, included, config, (*chain, rel))
