"""When each collector runs: on the agent's tick grid, every ``interval``, each run up to ``jitter`` late.

Ticks are aligned to the wall clock (multiples of ``tick`` since the epoch), so every agent in a
fleet stamps its batches on the same grid and analytics sees one timestamp per round across hosts.
Run ``k`` of a collector is due at ``start + k * interval + U(0, jitter)`` and runs on the first tick
at or after that: the rate never drifts, and the jitter spreads runs of slow shared resources
(a BMC, a parallel filesystem) across the fleet. A collector that falls behind skips the runs it
missed rather than running them back to back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from vigil.collectors.agent.config import CollectorSettings

_EPSILON = 1e-6  # float slack when a due time and a tick are the same instant


def first_tick(now: float, tick: float) -> float:
    """The next multiple of ``tick`` at or after ``now``."""
    return math.ceil(now / tick - _EPSILON) * tick


class Schedule:
    def __init__(self, collectors: Mapping[str, CollectorSettings], start: float, rng: random.Random) -> None:
        self._specs = dict(collectors)
        self._start = start
        self._rng = rng
        self._runs = dict.fromkeys(self._specs, 0)
        self.next_due = {name: self._due(name, 0) for name in self._specs}

    def _due(self, name: str, k: int) -> float:
        spec = self._specs[name]
        offset = self._rng.uniform(0.0, spec.jitter) if spec.jitter > 0 else 0.0
        return self._start + k * spec.interval + offset

    def due(self, tick: float) -> list[str]:
        """The collectors to run on ``tick`` (sorted by name), each advanced to its next run."""
        out = []
        for name in sorted(self._specs):
            if self.next_due[name] > tick + _EPSILON:
                continue
            out.append(name)
            interval = self._specs[name].interval
            k = self._runs[name] + 1
            # Behind (a stalled agent)? Skip to the first run whose slot is after this tick.
            k = max(k, math.floor((tick - self._start) / interval + _EPSILON) + 1)
            self._runs[name] = k
            self.next_due[name] = self._due(name, k)
        return out
