"""Property test: answer files drawn from the JSON Schema (hypothesis-jsonschema) either
render output that halgen's own lint passes, that nginx -t accepts and whose user-data
fits Linode's limit - or are refused with exit 2 and well-formed FILE:LINE lines.

A run draws HALGEN_FUZZ_EXAMPLES files (default 200) from a fixed seed, so CI is
repeatable; set HALGEN_FUZZ_SEED to explore other files. Every failure found is kept
as a named case under tests/fuzz_regressions/ and runs on every test run."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis_jsonschema import from_schema

from halgen.cli import _lint_file_rules
from halgen.compiler import pipeline, schema
from halgen.compiler.cloudinit import USER_DATA_LIMIT
from halgen.compiler.write import render
from halgen.errors import HalgenError, ProblemsError
from halgen.lint import lint

from conftest import IN_CI

EXAMPLES = int(os.environ.get("HALGEN_FUZZ_EXAMPLES", "200"))
SEED = int(os.environ.get("HALGEN_FUZZ_SEED", "20261127"))
REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
_LINE = re.compile(r"^[^\n]+:\d+: [^\n]+$")
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _yaml(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)}: {json.dumps(v)}\n" for k, v in doc.items()) or "{}\n"


def _nginx_available() -> bool:
    if shutil.which("nginx"):
        return True
    if IN_CI:
        pytest.fail("nginx is needed (apt-get install nginx)")
    return False


def check_answer_file(path: Path, workdir: Path, nginx: bool) -> str:
    """'rendered' or 'refused'; an assertion error (or any other exception) is a failure."""
    try:
        answers = pipeline.load_answers(path)
        repo = render(answers, workdir / "repo", check=_lint_file_rules)
    except ProblemsError as err:
        for line in err.format_message().splitlines():
            assert _LINE.match(line) and not _UNPRINTABLE.search(line), line
        return "refused"
    except HalgenError as err:
        message = err.format_message()
        assert message and "Traceback" not in message
        return "refused"
    assert lint(repo, tools=False).findings == []  # warnings too: nothing at all
    if nginx:
        report = lint(repo, select={"HAL501"})
        assert report.findings == [], [f.message for f in report.findings]
    from halgen.compiler import secrets
    from halgen.compiler.write import user_data

    _, documents = user_data(repo, answers, secrets.stand_ins())
    assert all(len(text.encode()) <= USER_DATA_LIMIT for text in documents.values())
    return "rendered"


@pytest.mark.realserver
def test_answer_files_drawn_from_the_schema(record_property: Any) -> None:
    nginx = _nginx_available()
    outcomes: dict[str, int] = {"rendered": 0, "refused": 0}

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(from_schema(copy.deepcopy(schema.schema())))  # it rewrites the schema it is given
    def draw(doc: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="halgen-fuzz-") as scratch:
            path = Path(scratch) / "answers.yml"
            path.write_text(_yaml(doc), encoding="utf-8")
            outcomes[check_answer_file(path, Path(scratch), nginx)] += 1

    draw()
    record_property("fuzz", outcomes)
    print(f"fuzz: {sum(outcomes.values())} answer files, {outcomes['rendered']} rendered, "
          f"{outcomes['refused']} refused")
    assert sum(outcomes.values()) >= min(EXAMPLES, 200)


@pytest.mark.parametrize("case", sorted(p.name for p in REGRESSIONS.glob("*.yml")))
def test_fuzz_regression(case: str, tmp_path: Path) -> None:
    """Each kept case says on its first line what must happen: '# expect: rendered' or '# expect: refused'."""
    path = REGRESSIONS / case
    expected = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# expect: ")
    assert check_answer_file(path, tmp_path, nginx=_nginx_available()) == expected
