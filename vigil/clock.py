"""Time, injected: the system clock for services and a fake clock for scenario tests.

Times are float seconds since the Unix epoch, which is UTC by definition; the codec writes them
as timezone-aware ISO-8601 or epoch nanoseconds and never accepts a naive timestamp.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from vigil.errors import InvalidEvent


class Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        self._mono += max(0.0, seconds)


def to_iso(ts: float) -> str:
    """ISO-8601 in UTC. Never raises: it renders alert payloads and log lines, where a time beyond
    datetime's range (year 10000, NaN) must not stop a consumer. Such a value comes out as
    ``invalid-time(...)``, which :func:`from_iso` rejects, so it can never pass for a real time."""
    try:
        return datetime.fromtimestamp(ts, tz=UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"invalid-time({ts!r})"


def from_iso(text: str) -> float:
    """Parse an ISO-8601 timestamp that carries an offset; naive timestamps are rejected."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"invalid timestamp {text!r}") from exc
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidEvent(f"naive timestamp {text!r}: a UTC offset is required")
    return parsed.timestamp()


def from_datetime(value: datetime) -> float:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(f"naive datetime {value.isoformat()}: a UTC offset is required")
    return value.timestamp()
