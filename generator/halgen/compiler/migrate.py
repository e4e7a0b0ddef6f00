"""Answer migrations between blueprint versions, run by copier (``_migrations`` in copier.yml).

usage: python -m halgen.compiler.migrate rename OLD NEW [ANSWERS_FILE]
Renames a stored answer so that ``copier update`` across the renaming version needs
no hand edit. Idempotent; keeps the file's comments and order.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ruamel.yaml import YAML

# Renames shipped with blueprint releases: (version that renamed it, old name, new name).
# copier.yml's _migrations is generated from this list (python -m halgen.compiler.questions).
RENAMES: list[tuple[str, str, str]] = []


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


def migration_entry(version: str, old: str, new: str) -> dict[str, object]:
    """The copier.yml _migrations entry for one rename (runs before the update)."""
    return {
        "version": version,
        "when": "{{ _stage == 'before' }}",
        "command": ["{{ _copier_python }}", "-m", "halgen.compiler.migrate", "rename", old, new,
                    "{{ _copier_conf.answers_file }}"],
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[0] != "rename":
        print(__doc__, file=sys.stderr)
        return 2
    answers_file = Path(argv[3] if len(argv) == 4 else ".copier-answers.yml")
    changed = rename(answers_file, argv[1], argv[2])
    outcome = "renamed" if changed else "nothing to rename:"
    print(f"halgen.compiler.migrate: {outcome} {argv[1]} -> {argv[2]} in {answers_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
