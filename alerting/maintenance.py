"""Time intervals (Alertmanager's ``time_intervals`` shape) and maintenance windows built on them.

A time interval matches an instant when every field it sets does (unset: any): ``times``
(``start_time``-``end_time``, minutes, end exclusive), ``weekdays`` (``monday:friday``),
``days_of_month`` (``1:5``, ``-1`` is the last day), ``months`` (``january:march`` or numbers),
``years`` (``2026:2027``), read in ``location`` (an IANA zone, default UTC).

A maintenance window mutes the alerts its ``matchers`` select (a node set: ``host=~"node-0[1-4]"``,
``rack="r3"``) while one of its intervals holds: named ``time_intervals`` (recurring), inline
``schedule`` entries, or a one-off ``start``/``end``. Routes may also name intervals in
``mute_time_intervals`` / ``active_time_intervals``, as in Alertmanager.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field, field_validator, model_validator
from vigil.alerting.matchers import Matchers, matches_all
from vigil.alerting.pipeline.base import Mute

from vigil.config import FrozenModel

_DAYS = [d.lower() for d in calendar.day_name]  # monday first, as datetime.weekday()
_MONTHS = [m.lower() for m in calendar.month_name][1:]
HourMinute = Annotated[str, Field(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")]


class TimeRange(FrozenModel):
    start_time: HourMinute
    end_time: HourMinute

    def minutes(self) -> tuple[int, int]:
        (sh, sm), (eh, em) = (map(int, t.split(":")) for t in (self.start_time, self.end_time))
        return sh * 60 + sm, eh * 60 + em


def _ranges(values: Sequence[str], names: list[str] | None, low: int, high: int) -> list[tuple[int, int]]:
    """``"monday:friday"``, ``"1:5"``, ``"-1"`` as inclusive integer ranges (ValueError naming a bad one)."""
    out = []
    for value in values:
        lo, _, hi = str(value).partition(":")
        bounds = []
        for part in (lo, hi or lo):
            part = part.strip().lower()
            if names is not None and part in names:
                bounds.append(names.index(part) + (1 if names is _MONTHS else 0))
            else:
                try:
                    bounds.append(int(part))
                except ValueError:
                    raise ValueError(f"not a valid range: {value!r}") from None
        if not all(low <= b <= high for b in bounds):
            raise ValueError(f"{value!r} is outside {low}..{high}")
        out.append((bounds[0], bounds[1]))
    return out


class TimeInterval(FrozenModel):
    times: list[TimeRange] = Field(default_factory=list)
    weekdays: list[str] = Field(default_factory=list)
    days_of_month: list[str] = Field(default_factory=list)
    months: list[str] = Field(default_factory=list)
    years: list[str] = Field(default_factory=list)
    location: str = "UTC"

    @model_validator(mode="after")
    def _valid(self) -> TimeInterval:
        _ranges(self.weekdays, _DAYS, 0, 6)
        _ranges(self.days_of_month, None, -31, 31)
        _ranges(self.months, _MONTHS, 1, 12)
        _ranges(self.years, None, 1970, 9999)
        return self

    @field_validator("location")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def contains(self, ts: float) -> bool:
        at = datetime.fromtimestamp(ts, tz=UTC).astimezone(ZoneInfo(self.location))
        minute = at.hour * 60 + at.minute
        if self.times and not any(s <= minute < e for s, e in (t.minutes() for t in self.times)):
            return False
        if self.weekdays and not any(lo <= at.weekday() <= hi for lo, hi in _ranges(self.weekdays, _DAYS, 0, 6)):
            return False
        if self.days_of_month and not self._day_matches(at):
            return False
        if self.months and not any(lo <= at.month <= hi for lo, hi in _ranges(self.months, _MONTHS, 1, 12)):
            return False
        return not self.years or any(lo <= at.year <= hi for lo, hi in _ranges(self.years, None, 1970, 9999))

    def _day_matches(self, at: datetime) -> bool:
        last = calendar.monthrange(at.year, at.month)[1]
        for lo, hi in _ranges(self.days_of_month, None, -31, 31):
            lo, hi = (last + 1 + lo if lo < 0 else lo), (last + 1 + hi if hi < 0 else hi)
            if lo <= at.day <= hi:
                return True
        return False


class NamedTimeInterval(FrozenModel):
    name: str = Field(min_length=1)
    time_intervals: list[TimeInterval] = Field(default_factory=list)


class MaintenanceWindow(FrozenModel):
    name: str = Field(min_length=1)
    matchers: Matchers
    time_intervals: list[str] = Field(default_factory=list)  # names from alerting.time_intervals
    schedule: list[TimeInterval] = Field(default_factory=list)  # or inline
    start: AwareDatetime | None = None  # or once
    end: AwareDatetime | None = None
    comment: str = ""

    @model_validator(mode="after")
    def _when(self) -> MaintenanceWindow:
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end go together")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        if not (self.time_intervals or self.schedule or self.start):
            raise ValueError("say when: time_intervals, schedule, or start and end")
        return self


def in_intervals(names: Sequence[str], intervals: Mapping[str, Sequence[TimeInterval]], ts: float) -> bool:
    return any(any(t.contains(ts) for t in intervals.get(name, ())) for name in names)


class MaintenanceMuter:
    """The maintenance windows as a :class:`~vigil.alerting.pipeline.base.Muter`."""

    def __init__(self, windows: Sequence[MaintenanceWindow], intervals: Mapping[str, Sequence[TimeInterval]]) -> None:
        self._windows = list(windows)
        self._intervals = intervals

    def active(self, window: MaintenanceWindow, now: float) -> bool:
        if (
            window.start is not None
            and window.end is not None
            and window.start.timestamp() <= now < window.end.timestamp()
        ):
            return True
        return any(t.contains(now) for t in window.schedule) or in_intervals(
            window.time_intervals, self._intervals, now
        )

    def mutes(self, fingerprint: str, labels: Mapping[str, str], now: float) -> Mute | None:
        for window in self._windows:
            if matches_all(window.matchers, labels) and self.active(window, now):
                return Mute("maintenance", window.name, window.comment or f"maintenance window {window.name}")
        return None
