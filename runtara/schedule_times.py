"""When a schedule's ticks fall: a cron expression read in a time zone, or a fixed
interval. Pure arithmetic on aware datetimes; every time returned is in UTC."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import CroniterBadDateError, croniter

UTC = dt.timezone.utc
_MICROSECOND = dt.timedelta(microseconds=1)

WALK = 1000
"""Cron ticks at most counted one by one when looking back over missed ticks; older
ones are estimated from their average spacing (croniter steps one tick at a time,
and a schedule's row stays locked meanwhile)."""


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``; ValueError saying so when there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {name!r} is not a known IANA time zone name (such as UTC or Europe/Berlin)"
        ) from None


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a cron expression croniter can follow, or None."""
    if not croniter.is_valid(expression):
        return (
            f"cron {expression!r} is not a cron expression: five fields (minute hour "
            "day-of-month month day-of-week), a sixth for seconds, or @hourly, @daily, ..."
        )
    return None


class Timetable:
    """The ticks of one schedule: those of ``cron`` in ``timezone``, or every ``every``
    seconds from ``anchor`` (its creation) on."""

    def __init__(
        self, cron: str | None, every: float | None, timezone: str, anchor: dt.datetime
    ) -> None:
        if (cron is None) == (every is None):
            raise ValueError("a timetable has either a cron expression or an interval")
        self.cron = cron
        self.zone = zone(timezone)
        self.period = None if every is None else dt.timedelta(seconds=every)
        # Whole seconds, so that intervals of whole seconds tick on whole seconds.
        self.anchor = anchor.astimezone(UTC).replace(microsecond=0)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first tick after ``moment``; None when there is none (a cron
        expression whose years are past)."""
        if self.period is not None:
            return self.anchor + (self._steps_to(moment) + 1) * self.period
        try:
            found = croniter(self.cron, moment.astimezone(self.zone)).get_next(dt.datetime)
        except CroniterBadDateError:
            return None
        return found.astimezone(UTC)

    def due(self, first: dt.datetime, now: dt.datetime, keep: int) -> tuple[list[dt.datetime], int]:
        """The ticks from ``first`` to ``now`` (both included): the latest ``keep`` of
        them, oldest first, and how many older ones there are."""
        if now < first:
            return [], 0
        if self.period is None:
            return self._due_cron(first, now, keep)
        last = self._steps_to(now)
        count = last - self._steps_to(first - _MICROSECOND)
        kept = min(keep, count)
        ticks = [self.anchor + step * self.period for step in range(last - kept + 1, last + 1)]
        return ticks, count - kept

    def _steps_to(self, moment: dt.datetime) -> int:
        """How many whole periods from the anchor to ``moment`` (the index of the last
        tick at or before it)."""
        return (moment - self.anchor) // self.period

    def _due_cron(
        self, first: dt.datetime, now: dt.datetime, keep: int
    ) -> tuple[list[dt.datetime], int]:
        backwards = croniter(self.cron, (now + _MICROSECOND).astimezone(self.zone))
        walked: list[dt.datetime] = []
        more = False
        while True:
            try:
                tick = backwards.get_prev(dt.datetime).astimezone(UTC)
            except CroniterBadDateError:
                break
            if tick < first:
                break
            if len(walked) == WALK:
                more = True
                break
            walked.append(tick)
        walked.reverse()
        older = len(walked) - min(keep, len(walked))
        if more:
            older += _estimated_count(first, walked)
        return walked[len(walked) - min(keep, len(walked)) :], older


def _estimated_count(first: dt.datetime, walked: list[dt.datetime]) -> int:
    """About how many ticks fall from ``first`` up to (not including) ``walked[0]``,
    at the average spacing of ``walked``."""
    spacing = (walked[-1] - walked[0]) / (len(walked) - 1)
    return max(1, round((walked[0] - first) / spacing))


def on_time_window(tick: dt.datetime, following: dt.datetime | None) -> dt.timedelta:
    """How late a tick may still start when missed ticks are not caught up: half the
    time to the following tick, from 1 to 10 seconds."""
    if following is None:
        return dt.timedelta(seconds=10)
    half = (following - tick) / 2
    return max(dt.timedelta(seconds=1), min(dt.timedelta(seconds=10), half))
