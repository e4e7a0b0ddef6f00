"""cron schedules as Debian's cron reads them: ranges, names, steps, and schedules that never fire."""

from __future__ import annotations

import datetime
import re
import subprocess

import pytest

from halgen.formats import cron

from conftest import require


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


def _cron_firings(text: str, start: datetime.datetime, count: int) -> list[datetime.datetime]:
    """The next ``count`` minutes cron runs ``text`` at, day by day by cron's own rules."""
    s = cron.schedule(text)
    found: list[datetime.datetime] = []
    day = start
    while len(found) < count:
        in_days, in_weekdays = day.day in s.days, (day.isoweekday() % 7) in s.weekdays
        either = s.days_restricted and s.weekdays_restricted
        if day.month in s.months and ((in_days or in_weekdays) if either else (in_days and in_weekdays)):
            found += [day.replace(hour=h, minute=m) for h in sorted(s.hours) for m in sorted(s.minutes)
                      if day.replace(hour=h, minute=m) > start]
        day += datetime.timedelta(days=1)
    return found[:count]


def _systemd_firings(calendar: tuple[str, ...], start: datetime.datetime, count: int) -> list[datetime.datetime]:
    """What systemd computes for the timer's OnCalendar values (a timer fires on any)."""
    out = subprocess.run(["systemd-analyze", "calendar", f"--iterations={count}",
                          f"--base-time={start:%Y-%m-%d %H:%M:%S} UTC", *calendar],
                         capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}, check=True)
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", out.stdout)
    times = sorted({datetime.datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.UTC) for s in stamps})
    return times[:count]


@pytest.mark.parametrize("text", ["17 3 * * 0", "17 3 * * 1-6", "23 * * * *", "*/15 * * * *", "0 0 13 * 5",
                                  "5,35 1-23/2 * 1 0", "0 12 1 */3 *", "47 5 * * 7", "0 0 29 2 *", "30 4 1,15 * 3"])
def test_timers_fire_when_cron_would(text: str) -> None:
    """The timer's OnCalendar values fire at exactly cron's minutes (systemd's own calculation)."""
    require("systemd-analyze")
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert _systemd_firings(cron.on_calendar(text), start, 12) == _cron_firings(text, start, 12)


@pytest.mark.parametrize(("texts", "hours"), [(("17 3 * * 0",), 168), (("17 3 * * 1-6",), 48),
                                              (("17 3 * * 0", "17 3 * * 1-6"), 24), (("23 * * * *",), 1),
                                              (("0 0 29 2 *",), 4 * 365 * 24 + 24), (("0 12 1 */3 *",), 92 * 24)])
def test_longest_gap_between_runs(texts: tuple[str, ...], hours: int) -> None:
    assert cron.longest_gap_s(*texts) == hours * 3600
