"""Restart what dies, with capped exponential backoff, and give up on a crash loop.

``vigil up`` watches its units (the embedded broker, alerting, analytics, the simulator) through
this one class. The caller drives it: ``check()`` once per loop turn. A unit found dead is started
again after its current backoff; each restart doubles the backoff up to ``max_backoff``, and a unit
that stayed up ``reset_after`` starts from ``backoff`` again, so a crash once an hour is restarted
at once while a crash loop slows down. More than ``max_restarts`` attempts for one unit within
``window`` is a crash loop that restarting will not fix: the supervisor gives up and says which
unit, and the caller stops everything and exits non-zero. The clock is injected so the policy is
unit-tested without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field, model_validator

from vigil.config import FrozenModel, PositiveDuration, raise_key_errors
from vigil.errors import VigilError

log = logging.getLogger(__name__)


class SupervisionConfig(FrozenModel):
    """The ``supervision:`` section: how ``vigil up`` restarts a dead service or broker."""

    backoff: PositiveDuration = 1.0  # wait before the first restart
    max_backoff: PositiveDuration = 30.0
    reset_after: PositiveDuration = 60.0  # up this long: the next death is restarted after ``backoff`` again
    max_restarts: Annotated[int, Field(ge=0)] = 5  # attempts per unit within ``window`` before giving up
    window: PositiveDuration = 300.0

    @model_validator(mode="after")
    def _meaningful(self) -> SupervisionConfig:
        if self.max_backoff < self.backoff:
            message = f"must not be shorter than backoff ({self.backoff:g}s)"
            raise_key_errors(self, [(("max_backoff",), message, self.max_backoff)])
        return self


EventKind = Literal["died", "restarted", "restart_failed", "gave_up"]


@dataclass(frozen=True, slots=True)
class SupervisorEvent:
    at: float
    unit: str
    kind: EventKind
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.unit} {self.kind.replace('_', ' ')}" + (f": {self.detail}" if self.detail else "")


@dataclass(slots=True)
class _Unit:
    name: str
    alive: Callable[[], bool]
    start: Callable[[], None]
    describe: Callable[[], str]  # why it died (exit status), for the event
    backoff: float
    up_since: float
    retry_at: float | None = None  # set while the unit is dead and waiting for its restart
    attempts: deque[float] = field(default_factory=deque)  # attempt times within the window
    restarts: int = 0
    started_at: float = 0.0  # the latest successful (re)start, on the supervisor's clock


@dataclass(frozen=True, slots=True)
class UnitStatus:
    state: Literal["up", "restarting", "gave up"]
    restarts: int
    retry_in_s: float | None


class Supervisor:
    def __init__(self, config: SupervisionConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._units: dict[str, _Unit] = {}
        self.gave_up: str | None = None

    def watch(
        self,
        name: str,
        alive: Callable[[], bool],
        start: Callable[[], None],
        describe: Callable[[], str] = lambda: "",
    ) -> None:
        """Supervise a unit that is running now; ``start`` starts it again (raising VigilError or OSError)."""
        now = self._clock()
        self._units[name] = _Unit(name, alive, start, describe, self.config.backoff, now, started_at=now)

    def check(self) -> list[SupervisorEvent]:
        """One look at every unit: note deaths, restart those whose backoff is over."""
        events: list[SupervisorEvent] = []
        for unit in self._units.values():
            if self.gave_up is not None:
                break
            now = self._clock()
            if unit.retry_at is None:
                if not unit.alive():
                    events.append(self._died(unit, now))
            elif now >= unit.retry_at:
                events.append(self._restart(unit, now))
        for event in events:  # the caller shows them; the log keeps them where logging is configured
            log.info("%s", event)
        return events

    def _died(self, unit: _Unit, now: float) -> SupervisorEvent:
        if now - unit.up_since >= self.config.reset_after:
            unit.backoff = self.config.backoff
        unit.retry_at = now + unit.backoff
        why = unit.describe()
        return SupervisorEvent(now, unit.name, "died", (f"{why}; " if why else "") + f"restart in {unit.backoff:g}s")

    def _restart(self, unit: _Unit, now: float) -> SupervisorEvent:
        while unit.attempts and now - unit.attempts[0] >= self.config.window:
            unit.attempts.popleft()
        if len(unit.attempts) >= self.config.max_restarts:
            self.gave_up = unit.name
            window = f"{len(unit.attempts)} restarts within {self.config.window:g}s"
            return SupervisorEvent(now, unit.name, "gave_up", window)
        unit.attempts.append(now)
        delay = unit.backoff
        unit.backoff = min(unit.backoff * 2.0, self.config.max_backoff)
        try:
            unit.start()
        except (VigilError, OSError) as exc:
            unit.retry_at = now + unit.backoff
            return SupervisorEvent(now, unit.name, "restart_failed", f"{exc}; next try in {unit.backoff:g}s")
        unit.retry_at = None
        unit.up_since = unit.started_at = now
        unit.restarts += 1
        return SupervisorEvent(now, unit.name, "restarted", f"restart #{unit.restarts} after {delay:g}s")

    @property
    def restarts(self) -> dict[str, int]:
        return {name: unit.restarts for name, unit in self._units.items()}

    def started_at(self, name: str) -> float:
        """When ``name`` was last (re)started, on the supervisor's clock."""
        return self._units[name].started_at

    def status(self) -> dict[str, UnitStatus]:
        now = self._clock()
        out = {}
        for name, unit in self._units.items():
            if self.gave_up == name:
                out[name] = UnitStatus("gave up", unit.restarts, None)
            elif unit.retry_at is not None:
                out[name] = UnitStatus("restarting", unit.restarts, max(0.0, unit.retry_at - now))
            else:
                out[name] = UnitStatus("up", unit.restarts, None)
        return out
