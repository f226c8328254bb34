"""Schedules: whether a host's use of a binary recurs on a calendar.

The store remembers, per (host, name, path), the first bucket of each of the last
`MEMORY_DAYS` UTC days on which the binary used the network, for `[detect] memory`
(400 days by default) — far beyond the 14-day baseline (baseline/detect/memory.py). A
use *recurs* when it falls at about the same time of day (within `TIME_OF_DAY`) as an
earlier day's use, and that earlier day is

* the day before (daily), or 1 to 4 weeks before (weekly, every 2 weeks, …), or
* the same day of the month 1 to 12 months before (monthly, quarterly, yearly), in
  the host's own time zone: UTC shifted by a whole number of hours from −12 to +14,
  so a job at 00:30 on the 1st at UTC+2 (22:30 UTC on the last day of the month
  before) is monthly too.

The second occurrence already recurs; a first-ever run never does. How the rule uses
it (docs/scoring.md "Schedules"): a recurring use of a binary a schedule may explain
(`eligible`: no shell, and a package-managed, /usr/local or home path — never a
volatile, hidden or unknown one) is scored as routine; for a binary with an open signal
on the host (an attacker's tool) only when a scheduler started it (cron, anacron, atd,
systemd among its ancestors: baseline/detect/recurring.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rarenet.baseline.shells import SHELL_NAMES
from rarenet.baseline.units import format_time
from rarenet.extension.locations import Location, classify

DAY = 86400
WEEK = 7 * DAY
MEMORY_DAYS = 32  # days remembered per (host, binary): the latest ones
RECORD = 8  # hex digits per remembered day: minutes since the epoch
TIME_OF_DAY = 2 * 3600  # "about the same time": within two hours
MAX_WEEKS = 4
MAX_MONTHS = 12
ZONES = range(-12, 15)  # whole-hour UTC offsets a host's clock may have
_SCHEDULED_LOCATIONS = frozenset({Location.PACKAGE, Location.LOCAL, Location.USER})
SCHEDULERS = frozenset({"cron", "crond", "anacron", "atd", "fcron", "systemd", "run-parts"})


@dataclass(frozen=True)
class Recurrence:
    """A use that recurs: how often, which occurrence this is, and the one before."""

    every: str  # "daily", "weekly", "every 2 weeks", "monthly", "quarterly", "every 5 months"
    occurrence: int  # 2 for the second time
    previous: int  # time of the latest earlier occurrence on the schedule

    def as_json(self) -> dict[str, object]:
        return {
            "every": self.every,
            "occurrence": self.occurrence,
            "previous": format_time(self.previous),
        }

    def sentence(self) -> str:
        """ "recurs monthly, 3rd time (before: 2026-11-01T02:00:00Z)" """
        before = format_time(self.previous)
        return f"recurs {self.every}, {ordinal(self.occurrence)} time (before: {before})"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, … 11th, 12th, 13th, 21st."""
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


def encode(times: Iterable[int]) -> str:
    """Remembered days as stored: the latest `MEMORY_DAYS`, each its first use."""
    firsts: dict[int, int] = {}
    for at in times:
        day = at // DAY
        firsts[day] = min(at, firsts.get(day, at))
    kept = sorted(firsts.values())[-MEMORY_DAYS:]
    return "".join(f"{at // 60:08x}" for at in kept)


def decode(text: str | None) -> list[int]:
    """The stored days' first uses, in seconds, oldest first; [] for none or bad text."""
    if not text or len(text) % RECORD:
        return []
    try:
        return [int(text[i : i + RECORD], 16) * 60 for i in range(0, len(text), RECORD)]
    except ValueError:
        return []


def recurrence(at: int, remembered: Sequence[int], since: int | None = None) -> Recurrence | None:
    """Whether a use at `at` recurs on a schedule of the uses `remembered` (first use
    per day, any order) on days before `at`'s own UTC day, and not before `since`."""
    today = at - at % DAY
    earlier = sorted(
        (t for t in remembered if t < today and (since is None or t >= since)), reverse=True
    )
    for previous in earlier:
        step = _step_between(previous, at)
        if step is not None:
            count = 1 + sum(1 for t in earlier if _on_schedule(t, at, step))
            return Recurrence(step.words, count, previous)
    return None


def eligible(name: str, path: str) -> bool:
    """Whether a schedule can explain this binary: not a shell, and not run from a
    volatile or hidden place or from nowhere known (droppers live there)."""
    return name not in SHELL_NAMES and classify(path) in _SCHEDULED_LOCATIONS


def started_by_scheduler(ancestors: Iterable[str]) -> bool:
    """Whether a scheduler (cron, anacron, atd, systemd, …) is among these process names."""
    return any(name in SCHEDULERS for name in ancestors)


@dataclass(frozen=True)
class _Step:
    """One schedule's period: `size` days, weeks or months."""

    unit: str
    size: int

    @property
    def words(self) -> str:
        if self.unit == "month":
            return _MONTHLY.get(self.size, f"every {self.size} months")
        if self.unit == "week":
            return "weekly" if self.size == 1 else f"every {self.size} weeks"
        return "daily"


_MONTHLY = {1: "monthly", 3: "quarterly", 6: "every 6 months", 12: "yearly"}


def _step_between(previous: int, at: int) -> _Step | None:
    """The schedule on which `previous` is the occurrence right before `at`, if any."""
    gap = at - previous
    if _clock_apart(gap) > TIME_OF_DAY:
        return None
    months = _months_apart(previous, at, MAX_MONTHS)
    if months:
        return _Step("month", months)
    days = round(gap / DAY)
    if days == 1:
        return _Step("day", 1)
    if days % 7 == 0 and 1 <= days // 7 <= MAX_WEEKS:
        return _Step("week", days // 7)
    return None


def _on_schedule(previous: int, at: int, step: _Step) -> bool:
    """Whether `previous` is an earlier occurrence of `step`'s schedule through `at`."""
    gap = at - previous
    if _clock_apart(gap) > TIME_OF_DAY:
        return False
    if step.unit == "month":
        months = _months_apart(previous, at, 14 * MAX_MONTHS)
        return months > 0 and months % step.size == 0
    period = step.size * (7 if step.unit == "week" else 1)
    return round(gap / DAY) % period == 0


def _clock_apart(gap: int) -> int:
    """How far apart two times are on the clock face, whole days aside."""
    rest = gap % DAY
    return min(rest, DAY - rest)


def _months_apart(previous: int, at: int, most: int) -> int:
    """Whole months (1..most) between two times on the same day of the month in some
    whole-hour time zone; 0 when there is none."""
    for hours in ZONES:
        before = datetime.fromtimestamp(previous + hours * 3600, UTC)
        after = datetime.fromtimestamp(at + hours * 3600, UTC)
        if before.day == after.day:
            months = (after.year - before.year) * 12 + after.month - before.month
            if 1 <= months <= most:
                return months
    return 0
