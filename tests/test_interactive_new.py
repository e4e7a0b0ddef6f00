"""Interactive 'halgen new': each answer is checked at its prompt (schema in words, then the
cross-field rules that read only earlier answers), basic questions by default, and answers
refused at the end are kept for --answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from jinja2.sandbox import SandboxedEnvironment
from ruamel.yaml import YAML

from halgen.compiler import schema
from halgen.compiler.extension import HalgenExtension
from halgen.errors import RenderError
from halgen.journeys.new import ADVANCED, _copier_copy

from conftest import REPO, halgen

_ENV = SandboxedEnvironment(extensions=[HalgenExtension])


def _at_prompt(field: str, **answers: object) -> str:
    """What copier's validator shows for ``field`` with these answers given so far."""
    context = {**{k: v for k, v in schema.defaults().items() if k not in answers}, **answers}
    return _ENV.from_string("{{ halgen_field_error('" + field + "') }}").render(context)


def test_a_bad_subnet_is_refused_at_its_own_prompt() -> None:
    message = _at_prompt("vpc_subnet", vpc_subnet="10.0.0.0/8")
    assert "/16 to /24" in message


def test_schema_messages_are_words_not_regexes() -> None:
    message = _at_prompt("project", project="Shop Front")
    assert message.startswith("is not allowed: must be a slug") and "^" not in message


def test_a_rule_waits_for_every_answer_it_reads() -> None:
    # sync needs two replicas: pg_replication comes after pg_replicas in the questions
    assert _at_prompt("pg_replicas", pg_replicas=1) == ""
    assert "at least two replicas" in _at_prompt("pg_replication", pg_replicas=1, pg_replication="sync")


def test_a_rule_about_an_earlier_field_speaks_at_the_last_answer_it_reads() -> None:
    message = _at_prompt("app_servers", vpc_subnet="10.0.0.0/24", app_servers=250)
    assert message == "" or "vpc_subnet" in message  # rules reading later answers wait for them


def test_basic_questions_are_few_and_the_rest_ask_only_when_advanced() -> None:
    questions = YAML(typ="safe").load((REPO / "copier.yml").read_text())
    asked = [name for name, q in questions.items() if not name.startswith("_") and "ask" not in q]
    assert 8 <= len(asked) <= 14, asked
    assert all(q.get("ask") == "{{ " + ADVANCED + " | default(false) }}"
               for name, q in questions.items() if not name.startswith("_") and name not in asked)
    assert all("^" not in q["help"] for name, q in questions.items() if not name.startswith("_"))


def test_answers_refused_at_the_end_are_kept_for_next_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rule speaks at a prompt now; the end check stays as the last guard, so it is
    proven here with the prompt-time rules switched off."""
    from halgen.compiler import crossfield

    monkeypatch.setattr(crossfield, "early_violation", lambda field, answered: "")
    dest = tmp_path / "stack"
    with pytest.raises(RenderError) as caught:
        _copier_copy(str(REPO), tmp_path / "staging", {"project": "shop", "pg_replicas": 1, "pg_replication": "sync"},
                     True, None, dest)
    kept = tmp_path / "stack.answers.yml"
    assert f"kept in {kept}" in str(caught.value) and f"halgen new {dest} --answers {kept}" in str(caught.value)
    check = halgen("check", str(kept))
    assert check.returncode == 2 and f"{kept}:" in check.stderr and "pg_replication" in check.stderr
    # a second refusal never overwrites the first file
    with pytest.raises(RenderError):
        _copier_copy(str(REPO), tmp_path / "staging2", {"pg_replicas": 1, "pg_replication": "sync"}, True, None, dest)
    assert (tmp_path / "stack.answers-2.yml").is_file()


def test_plain_copier_takes_defaults_for_advanced_questions_and_records_them(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "copier", "copy", "--trust", "--defaults", "--quiet", str(REPO),
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    recorded = YAML(typ="safe").load((tmp_path / "out" / ".copier-answers.yml").read_text())
    assert set(schema.fields()) <= set(recorded)
