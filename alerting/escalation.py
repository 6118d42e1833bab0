"""Escalation policies and on-call rotations.

An escalation policy is a list of levels; each names receivers and how long the incident may stay
unacknowledged before they are told (``after``, counted from the previous level). A route names the
policy (``escalation: gpu``); the incident's first page starts the clock, an acknowledgement stops
it, and every level reached is a timeline entry and a notification (reason ``escalated``) on the
incident's own dedup key. ``repeat`` runs the levels again that many times.

An on-call rotation hands an incident to a person: ``users`` take ``shift``-long turns from ``start``
(the handoff is at ``start`` plus a whole number of shifts). A level, or a route's escalation, may
``assign`` a rotation: the incident's assignee becomes whoever is on call when the level is reached.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from vigil.config import FrozenModel, PositiveDuration


class EscalationLevel(FrozenModel):
    after: PositiveDuration
    receivers: list[str] = Field(min_length=1)
    assign: str | None = None  # an on-call rotation's name


class EscalationPolicy(FrozenModel):
    name: str = Field(min_length=1)
    assign: str | None = None  # who gets the incident at the first page
    levels: list[EscalationLevel] = Field(min_length=1)
    repeat: int = Field(0, ge=0, le=100)

    def level(self, n: int) -> EscalationLevel | None:
        """Level ``n`` (1-based: level 0 is the first page), or None once the policy is exhausted."""
        if n < 1 or n > len(self.levels) * (self.repeat + 1):
            return None
        return self.levels[(n - 1) % len(self.levels)]


class Rotation(FrozenModel):
    name: str = Field(min_length=1)
    users: list[str] = Field(min_length=1)
    shift: PositiveDuration = 7 * 86400.0
    start: AwareDatetime

    def on_call(self, at: float) -> str:
        turns = int((at - self.start.timestamp()) // self.shift)
        return self.users[turns % len(self.users)]

    def next_handoff(self, at: float) -> float:
        turns = int((at - self.start.timestamp()) // self.shift) + 1
        return self.start.timestamp() + turns * self.shift
