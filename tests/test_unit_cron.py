"""cron schedules as Debian's cron reads them: ranges, names, steps, and schedules that never fire."""

from __future__ import annotations

import pytest

from halgen.formats import cron


@pytest.mark.parametrize("text", ["17 3 * * 0", "*/15 * * * 1-5", "0 0 29 2 *", "0 0 31 4,5 *", "17 3 * * 7",
                                  "0 0 30 2 1", "5,35 1-23/2 * jan sun", "0 12 1 */3 *", "0 0 31 * *"])
def test_schedules_cron_runs(text: str) -> None:
    cron.schedule(text)


@pytest.mark.parametrize(("text", "words"), [
    ("60 3 * * 0", "minute 60 is out of range 0-59"),
    ("17 24 * * 0", "hour 24 is out of range 0-23"),
    ("17 3 0 * *", "day of month 0 is out of range 1-31"),
    ("17 3 * 13 *", "month 13 is out of range 1-12"),
    ("17 3 * * 8", "day of week 8 is out of range 0-7"),
    ("17 3 31 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
    ("0 0 30,31 2 *", "never fires"),
    ("*/0 * * * *", "a step of 0"),
    ("5-1 * * * *", "runs backwards"),
    ("1,x * * * *", "expected *, N, N-M"),
    ("17 3 * *", "needs 5 fields"),
    ("0 0 * jan-mar *", "expected *, N, N-M"),  # Debian's cron takes names only one at a time
])
def test_schedules_cron_refuses_or_never_runs(text: str, words: str) -> None:
    with pytest.raises(cron.CronError, match=words.replace("*", r"\*")):
        cron.schedule(text)


def test_sunday_is_0_and_7() -> None:
    assert cron.schedule("0 0 * * 7").weekdays == cron.schedule("0 0 * * 0").weekdays == frozenset({0})


def test_a_step_from_a_number_runs_to_the_end() -> None:
    assert cron.schedule("10/20 * * * *").minutes == frozenset({10, 30, 50})


def test_cron_d_lines() -> None:
    text = ("# comment\nSHELL=/bin/bash\nPATH=/usr/bin:/bin\n"
            "17 3 * * 0 root /usr/local/sbin/backup full\n"
            "@daily postgres /usr/bin/vacuumdb --all\n"
            "60 3 * * 0 root /bin/true\n"
            "@sometimes root /bin/true\n"
            "17 3 * * 0 root\n")
    jobs, errors = cron.cron_d(text)
    assert [(j.line, j.when, j.user, j.command) for j in jobs] == [
        (4, "17 3 * * 0", "root", "/usr/local/sbin/backup full"), (5, "@daily", "postgres", "/usr/bin/vacuumdb --all")]
    assert [line for line, _ in errors] == [6, 7, 8]
