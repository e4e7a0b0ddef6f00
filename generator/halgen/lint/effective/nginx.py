"""nginx.conf with the files it includes."""

from __future__ import annotations

import functools

from halgen.formats import nginx
from halgen.lint.effective.paths import Unseen, empty_glob_ok, matches, on_node, split, unseen_ok
from halgen.lint.repo import Repo


def _nginx_targets(repo: Repo, directive: nginx.Directive) -> tuple[str, list[str]]:
    node, _ = split(directive.file)
    target = on_node(directive.args[0], "/etc/nginx") if directive.args else ""
    return target, matches(repo, node, target) if target else []


@functools.cache
def _nginx_payload(repo: Repo, rel: str) -> dict:
    return nginx.parse(repo.root / rel, included=True)


def _nginx_included(repo: Repo, rel: str) -> list[dict]:
    configs = _nginx_payload(repo, rel).get("config") or [{}]
    return list(configs[0].get("parsed", []))


def nginx_included_errors(repo: Repo, rel: str) -> list[tuple[str, int, str]]:
    """(file, line, message) of what crossplane refuses in the files an nginx.conf includes."""
    included = sorted({f for d in nginx_all(repo, rel, "include") for f in _nginx_targets(repo, d)[1]})
    return [(f, err.get("line") or 1, err["error"].replace(str(repo.root / f), f))
            for f in included for config in _nginx_payload(repo, f).get("config", [])
            for err in config.get("errors", [])]


@functools.cache
def nginx_directives(repo: Repo, rel: str) -> tuple[nginx.Directive, ...]:
    """Every directive of an nginx.conf and of the files its includes name (globs
    too, in glob order), each with its file, depth first."""

    def includer(directive: nginx.Directive) -> list[tuple[str, list[dict]]]:
        return [(f, _nginx_included(repo, f)) for f in _nginx_targets(repo, directive)[1]]

    return tuple(nginx.walk(repo.nginx(rel), rel, includer))


def nginx_unseen(repo: Repo, rel: str) -> list[Unseen]:
    found = []
    for d in nginx_directives(repo, rel):
        if d.name == "include":
            target, files = _nginx_targets(repo, d)
            if not files and not unseen_ok(target) and not empty_glob_ok(repo, split(d.file)[0], target):
                found.append(Unseen(d.file, d.line, "include", target))
    return found




def nginx_all(repo: Repo, rel: str, name: str) -> list[nginx.Directive]:
    return [d for d in nginx_directives(repo, rel) if d.name == name]
