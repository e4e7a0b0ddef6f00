"""Answer migrations between blueprint versions, run by copier (``_migrations`` in copier.yml).

usage: python -m halgen.compiler.migrate rename OLD NEW [ANSWERS_FILE]
       python -m halgen.compiler.migrate keep NAME VALUE [ANSWERS_FILE]
rename: renames a stored answer so that ``copier update`` across the renaming version
needs no hand edit. keep: stores VALUE for a new question when the answers lack it,
for a new default that would change what an existing stack runs. Idempotent; keeps
the file's comments and order.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ruamel.yaml import YAML

# Renames shipped with blueprint releases: (version that renamed it, old name, new name).
# copier.yml's _migrations is generated from this list (python -m halgen.compiler.questions).
RENAMES: list[tuple[str, str, str]] = []
# New questions whose default would change a running stack: (name, the value that keeps
# what stacks made before the question run). Applied before every update.
KEEPS: list[tuple[str, str]] = [
    # Stacks made before Patroni run PostgreSQL without it: their repo (and pg-failover.sh)
    # must keep describing that until the user converts (README: Converting to Patroni).
    ("pg_failover", "manual"),
]


def rename(answers_file: Path, old: str, new: str) -> bool:
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(answers_file.read_text(encoding="utf-8"))
    if old not in data:
        return False
    position = list(data).index(old)
    value = data.pop(old)
    if new not in data:
        data.insert(position, new, value)
    with answers_file.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return True


def keep(answers_file: Path, name: str, value: str) -> bool:
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(answers_file.read_text(encoding="utf-8"))
    if name in data:
        return False
    data[name] = value
    with answers_file.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return True


def keep_entry(name: str, value: str) -> dict[str, object]:
    """The copier.yml _migrations entry for one kept value (before every update)."""
    return {
        "when": "{{ _stage == 'before' }}",
        "command": ["{{ _copier_python }}", "-m", "halgen.compiler.migrate", "keep", name, value,
                    "{{ _copier_conf.answers_file }}"],
    }


def migration_entry(version: str, old: str, new: str) -> dict[str, object]:
    """The copier.yml _migrations entry for one rename (runs before the update)."""
    return {
        "version": version,
        "when": "{{ _stage == 'before' }}",
        "command": ["{{ _copier_python }}", "-m", "halgen.compiler.migrate", "rename", old, new,
                    "{{ _copier_conf.answers_file }}"],
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[0] not in ("rename", "keep"):
        print(__doc__, file=sys.stderr)
        return 2
    answers_file = Path(argv[3] if len(argv) == 4 else ".copier-answers.yml")
    if argv[0] == "keep":
        changed = keep(answers_file, argv[1], argv[2])
        print(f"halgen.compiler.migrate: {argv[1]}: {'kept ' + argv[2] if changed else 'already answered'} in "
              f"{answers_file}")
        return 0
    changed = rename(answers_file, argv[1], argv[2])
    outcome = "renamed" if changed else "nothing to rename:"
    print(f"halgen.compiler.migrate: {outcome} {argv[1]} -> {argv[2]} in {answers_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
