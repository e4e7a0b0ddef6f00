"""Answers and secrets that are stand-ins, not a real stack: they must never reach a node.

The defaults make a stack that renders, lints and rehearses out of the box, so they
name documentation networks (RFC 5737), example domains (RFC 2606) and a placeholder
SSH key. Pasted into Linode's create form, such user-data locks every admin out of
every node, silently. ``halgen build`` refuses them unless told they are meant."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from halgen.compiler import loader, schema, secrets
from halgen.compiler.answers import Answers
from halgen.errors import FieldPath, Problem
from halgen.formats import envfile

DOCUMENTATION_NETWORKS = tuple(ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
EXAMPLE_TLDS = ("example", "test", "invalid", "localhost")


def _placeholder_keys() -> frozenset[str]:
    return frozenset(key for admin in schema.defaults()["admins"] for key in admin["ssh_keys"])


def is_example_domain(name: str) -> bool:
    name = name.lower().rstrip(".")
    return any(name == d or name.endswith("." + d) for d in EXAMPLE_DOMAINS) or name.rsplit(".", 1)[-1] in EXAMPLE_TLDS


def found(answers: Answers) -> list[tuple[FieldPath, str]]:
    """(field, why) for each answer that is a stand-in."""
    out: list[tuple[FieldPath, str]] = []
    placeholder_keys = _placeholder_keys()
    for i, admin in enumerate(answers.admins):
        for j, key in enumerate(admin.ssh_keys):
            if key in placeholder_keys:
                out.append((("admins", i, "ssh_keys", j), "is the placeholder key: nobody could log in"))
    for i, cidr in enumerate(answers.admin_cidrs):
        net = ipaddress.IPv4Network(cidr, strict=False)
        if any(net.subnet_of(doc) for doc in DOCUMENTATION_NETWORKS):
            out.append((("admin_cidrs", i), f"{cidr} is a documentation network: SSH would admit no real admin"))
    for i, domain in enumerate(answers.domains):
        if is_example_domain(domain):
            out.append((("domains", i), f"{domain} is an example domain"))
    if is_example_domain(answers.admin_email.rpartition("@")[2]):
        out.append((("admin_email",), "is at an example domain: alerts and certificate notices would go nowhere"))
    return out


def problems(repo: Path) -> list[Problem]:
    """Every stand-in in a generated repo's answers (with its line in .copier-answers.yml)
    and every secret the user has yet to provide (secrets/secrets.env)."""
    answers_file = repo / ".copier-answers.yml"
    loaded = loader.load(answers_file)
    from halgen.compiler.pipeline import load_repo_answers

    out = [Problem(str(answers_file), loaded.line_of(path), why, path) for path, why in found(load_repo_answers(repo))]
    secrets_file = repo / secrets.SECRETS_FILE
    lines = envfile.parse(secrets_file.read_text(encoding="utf-8"))[0] if secrets_file.is_file() else {}
    for name in secrets.missing_provided(secrets.read(repo)):
        line = lines[name].line if name in lines else 0
        out.append(Problem(str(secrets_file), line, f"is empty ({secrets.PROVIDED[name]}): backups fail without it",
                           (name,)))
    return out
