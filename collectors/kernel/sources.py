"""What every follower source hands back: lines read since the last call and the position after them.

A source owns its reading position (it never re-reads what it already returned while the process
lives) but not the committed one: that is the follower's (``follower.py``), stored only after the
lines were handed on. A source never raises for an unreadable log; it returns a ``Problem``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from vigil.collectors.base import Problem
from vigil.collectors.kernel.timestamps import Stamped

StartAt = Literal["beginning", "end"]


@dataclass(frozen=True, slots=True)
class Line:
    raw: str
    stamped: Stamped


@dataclass(slots=True)
class Batch:
    lines: list[Line] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    position: dict[str, Any] | None = None  # after the last line returned; None: nothing read yet


class Source(Protocol):
    kind: str  # LogEvent.source: kmsg | journal | file

    def read(self, limit: int) -> Batch: ...

    def close(self) -> None: ...
