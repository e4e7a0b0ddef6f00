"""cron schedules and /etc/cron.d files as Debian's cron (Vixie cron) reads them.

``schedule`` checks the five time fields by range and name and says when a schedule can
never fire (the 31st of a month that has 30 days, the 30th of February): cron accepts
such a line without a word, and the job silently never runs."""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass

from halgen.formats.base import ParseError

# name, lowest, highest, names (a single name may stand for one value)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
SPECIAL = {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years count
_ITEM = re.compile(r"(?P<range>\*|\d+(?:-\d+)?)(?:/(?P<step>\d+))?")
_ENV_LINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=")


class CronError(ValueError):
    """A schedule cron refuses or that never fires; the message says which field and why."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0-6, Sunday 0 (7 folded into 0)
    days_restricted: bool  # day of month did not start with '*'
    weekdays_restricted: bool


def schedule(text: str) -> Schedule:
    """Five fields ("17 3 * * 0") -> Schedule; CronError names the first bad field."""
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"needs 5 fields (minute hour day-of-month month day-of-week), has {len(fields)}")
    values = [_field(value, *spec) for value, spec in zip(fields, _FIELDS, strict=True)]
    parsed = Schedule(values[0], values[1], values[2], values[3], frozenset(d % 7 for d in values[4]),
                      not fields[2].startswith("*"), not fields[4].startswith("*"))
    _never_fires(parsed)
    return parsed


def _field(text: str, label: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    if text.lower() in names:
        return frozenset({names.index(text.lower()) + low})
    found: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if not match:
            known = f" or one name ({', '.join(names[:3])}, ...)" if names else ""
            raise CronError(f"{label} {item!r}: expected *, N, N-M, with an optional /STEP{known}")
        step = int(match["step"]) if match["step"] else 1
        if step == 0:
            raise CronError(f"{label} {item!r}: a step of 0")
        if match["range"] == "*":
            first, last = low, high
        else:
            first_text, _, last_text = match["range"].partition("-")
            first, last = int(first_text), int(last_text or first_text)
            if match["step"] and not last_text:
                last = high  # 'N/STEP' means from N to the end
        for number in (first, last):
            if not low <= number <= high:
                raise CronError(f"{label} {number} is out of range {low}-{high}")
        if first > last:
            raise CronError(f"{label} {item!r}: the range runs backwards")
        found.update(range(first, last + 1, step))
    return frozenset(found)


def _never_fires(s: Schedule) -> None:
    # With both day fields restricted cron runs on either, and every weekday comes round.
    if s.days_restricted and s.weekdays_restricted:
        return
    if not any(day <= _DAYS_IN_MONTH[month - 1] for month in s.months for day in s.days):
        months = ", ".join(str(m) for m in sorted(s.months))
        raise CronError(f"never fires: no month in ({months}) has day {min(s.days)}")


@dataclass(frozen=True)
class Job:
    line: int
    when: str  # the five fields, or an @ word
    user: str
    command: str


def cron_d(text: str) -> tuple[list[Job], list[ParseError]]:
    """The jobs of an /etc/cron.d file (which names the user) and its bad lines."""
    jobs: list[Job] = []
    errors: list[ParseError] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or _ENV_LINE.match(line):
            continue
        words = line.split(None, 6 if not line.startswith("@") else 2)
        when_count = 1 if line.startswith("@") else 5
        if len(words) < when_count + 2:
            errors.append((number, "expected the schedule, a user and a command"))
            continue
        when = " ".join(words[:when_count])
        try:
            if when_count == 5:
                schedule(when)
            elif when not in SPECIAL:
                raise CronError(f"{when!r} is not one of {', '.join(sorted(SPECIAL))}")
        except CronError as err:
            errors.append((number, str(err)))
            continue
        jobs.append(Job(number, when, words[when_count], words[when_count + 1]))
    return jobs, errors


_WEEKDAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def on_calendar(text: str) -> tuple[str, ...]:
    """A cron schedule as systemd timer ``OnCalendar=`` values that fire at the same minutes.

    Every field becomes an explicit list ('*' when it covers the whole range). With both
    day fields restricted cron fires on either; a timer's fields must all match, so that
    schedule becomes two values (a timer fires on any of its OnCalendar lines)."""
    s = schedule(text)

    def listed(values: frozenset[int], low: int, high: int, width: int) -> str:
        if values == frozenset(range(low, high + 1)):
            return "*"
        return ",".join(f"{v:0{width}d}" for v in sorted(values))

    months, days = listed(s.months, 1, 12, 2), listed(s.days, 1, 31, 2)
    time = f"{listed(s.hours, 0, 23, 2)}:{listed(s.minutes, 0, 59, 2)}:00"
    weekdays = "" if not s.weekdays_restricted else ",".join(_WEEKDAY_NAMES[d] for d in sorted(s.weekdays)) + " "
    if s.days_restricted and s.weekdays_restricted:
        return (f"*-{months}-{days} {time}", f"{weekdays}*-{months}-* {time}")
    return (f"{weekdays}*-{months}-{days if s.days_restricted else '*'} {time}",)


@functools.lru_cache(maxsize=256)  # eight years of days per schedule: every render asks for the same few
def longest_gap_s(*texts: str, start: int = 0) -> int:
    """The longest time in seconds between two firings of one or more cron schedules
    together (UTC, over eight years from ``start`` in Unix seconds, so a 29 February
    schedule fires twice): how old a job's last success may be before the job is late."""
    schedules = [schedule(t) for t in texts]
    day_times = [sorted(h * 3600 + m * 60 for h in s.hours for m in s.minutes) for s in schedules]
    day0 = datetime.datetime.fromtimestamp(start, datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    longest = 0
    last: int | None = None
    inner: dict[tuple[int, ...], tuple[int, int, int]] = {}  # firing schedules -> (first, last, longest gap) of a day
    for offset in range(8 * 366 + 31):
        day = day0 + datetime.timedelta(days=offset)
        firing = tuple(i for i, s in enumerate(schedules) if day.month in s.months and _fires_on(s, day))
        if not firing:
            continue
        if firing not in inner:
            times = sorted({t for i in firing for t in day_times[i]})
            gaps = (b - a for a, b in zip(times, times[1:], strict=False))
            inner[firing] = (times[0], times[-1], max(gaps, default=0))
        first_time, last_time, within = inner[firing]
        base = int(day.timestamp())
        longest = max(longest, within, base + first_time - last if last is not None else 0)
        last = base + last_time
    return longest


def _fires_on(s: Schedule, day: datetime.datetime) -> bool:
    in_days, in_weekdays = day.day in s.days, (day.isoweekday() % 7) in s.weekdays
    return (in_days or in_weekdays) if s.days_restricted and s.weekdays_restricted else in_days and in_weekdays
