"""Rules about the repo itself."""

from __future__ import annotations

from collections.abc import Iterator

from halgen.errors import Problem
from halgen.lint.registry import rule
from halgen.lint.repo import ANSWERS_FILE, Repo


@rule("HAL001", "answers-valid", "error", "meta")
def answers_valid(repo: Repo) -> Iterator[Problem]:
    """The answers the repo was made from are present and valid.

    `.copier-answers.yml` records the answers; every consistency rule compares
    the files with what those answers say, so a missing or invalid answer file
    makes half of the lint blind. Fix the field named in the message (see
    `halgen explain FIELD`), then re-render with `copier update`.
    """
    if not repo.exists(ANSWERS_FILE):
        yield Problem(ANSWERS_FILE, 0, "missing: this does not look like a repo made by halgen or copier")
        return
    for problem in repo.answer_problems:
        yield Problem(ANSWERS_FILE, problem.line, problem.format().split(": ", 1)[1])
