"""Is the telemetry telling the truth? Stale, frozen and silently-zero series, vectorised over series.

Each function takes one array element per series (a slot of the analytics slot table, or a column
of a host's rows) and returns new state arrays, so the live detector
(``vigil.analytics.stages.truthfulness``) runs them once per round of a poll.

- stale: no sample for ``k`` x the series' own expected interval (an EWMA of its gaps);
- frozen: the same value ``run`` times in a row on a series that normally changes. The change
  rate ``rate`` is an EWMA of "differs from the previous sample", updated lazily when a run ends,
  so during a run it still describes the series before it froze; the run's evidence is
  ``run x -log10(1 - rate)``, the improbability of so long a run by chance, in decimal digits.
  A counter at zero or a fan at a fixed speed has a rate near 0 and never qualifies;
- silently zero: a GPU reading ~0 (utilisation, power) while its siblings are busy.

:class:`FrozenDetector` is the frozen check with the Detector API (one host's series as features).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.columns import IntArray
from vigil.analytics.models.peers import group_median
from vigil.analytics.models.ring import as_rows, pack, unpack

MAX_RATE = 1.0 - 1e-3  # a series that always changed still needs a few equal samples to be called frozen


def gap_step(
    interval: FloatArray, last: FloatArray, ts: FloatArray, alpha: float, learn: np.ndarray[Any, np.dtype[np.bool_]]
) -> tuple[FloatArray, FloatArray]:
    """(expected interval, last sample time) after samples at ``ts``; the first gap seeds the EWMA, and
    only gaps marked ``learn`` are learnt (an outage is not the series' cadence)."""
    with np.errstate(invalid="ignore"):
        gap = ts - last
    ok = np.isfinite(gap) & (gap > 0) & learn
    seeded = np.where(np.isnan(interval), gap, interval + alpha * (gap - interval))
    newer = np.isnan(last) | (ts > last)
    return np.where(ok, seeded, interval), np.where(newer, ts, last)


def stale_due(
    last: FloatArray, interval: FloatArray, k: float, min_interval: float, default_interval: float
) -> FloatArray:
    """When each series turns stale if nothing arrives: ``k`` expected intervals after its last sample."""
    expected = np.maximum(np.where(np.isnan(interval), default_interval, interval), min_interval)
    return np.asarray(last + k * expected, dtype=np.float64)


def stale(
    last: FloatArray,
    interval: FloatArray,
    now: float | FloatArray,
    k: float,
    min_interval: float,
    default_interval: float,
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Series last seen more than ``k`` expected intervals before ``now`` (a scalar or one time per
    series, e.g. its partition's event time); never-seen series are not stale."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(last) & (now > stale_due(last, interval, k, min_interval, default_interval)))


def frozen_step(
    prev: FloatArray, run: IntArray, rate: FloatArray, seen: IntArray, x: FloatArray, alpha: float
) -> tuple[FloatArray, IntArray, FloatArray, IntArray]:
    """(prev, run, rate, seen) after one new value per series (NaN: no sample, nothing changes)."""
    has = np.isfinite(x)
    same = has & (x == prev)
    first = has & np.isnan(prev)
    changed = has & ~same & ~first
    a = np.maximum(alpha, 1.0 / np.maximum(seen, 1))  # running mean while young, as the z-score warms up
    ended = rate * (1.0 - a) ** run  # the run's equal samples, folded in now that it is over
    new_rate = np.where(changed, np.minimum((1.0 - a) * ended + a, MAX_RATE), rate)
    new_rate = np.where(first, 0.0, new_rate)
    new_run = np.where(same, run + 1, np.where(has, 0, run))
    return np.where(has, x, prev), new_run.astype(run.dtype), new_rate, (seen + has).astype(seen.dtype)


def frozen_evidence(run: IntArray, rate: FloatArray) -> FloatArray:
    """-log10 of the chance of ``run`` equal samples in a row given the change rate before the run."""
    return np.asarray(run * -np.log10(1.0 - np.clip(rate, 0.0, MAX_RATE)), dtype=np.float64)


def silent_zero(
    group: IntArray, values: FloatArray, zero_below: FloatArray, busy_above: FloatArray, min_peers: int = 3
) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], FloatArray]:
    """(reads ~0 while the group's median is busy, the group median) per element; group -1: none."""
    vals = np.where(group >= 0, values, np.nan)
    med, count = group_median(group, vals)
    with np.errstate(invalid="ignore"):
        zero = (np.abs(vals) <= zero_below) & (med >= busy_above) & (count >= min_peers)
    return np.asarray(zero), med


class FrozenDetector(Detector):
    """Frozen-value evidence per feature; the score is the strongest (decimal digits, 0 = none)."""

    name = "frozen"

    def __init__(self, features: Sequence[str] = (), *, alpha: float = 0.05, warmup: int = 30) -> None:
        super().__init__(features)
        if not 0 < alpha < 1 or warmup < 2:
            raise ValueError("alpha must be in (0, 1) and warmup >= 2")
        self.alpha, self.warmup = alpha, warmup
        d = len(self.features)
        self.prev, self.rate = np.full(d, np.nan), np.zeros(d)
        self.run, self.seen = np.zeros(d, dtype=np.int64), np.zeros(d, dtype=np.int64)

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"warmup": 5}

    def _grow(self, n_features: int) -> None:
        extra = n_features - len(self.prev)
        self.prev = np.concatenate([self.prev, np.full(extra, np.nan)])
        self.rate = np.concatenate([self.rate, np.zeros(extra)])
        self.run = np.concatenate([self.run, np.zeros(extra, dtype=np.int64)])
        self.seen = np.concatenate([self.seen, np.zeros(extra, dtype=np.int64)])

    def _scores(self, x: FloatArray) -> FloatArray:
        """Evidence per feature if ``x`` came next: a run extended by one where x repeats."""
        d = len(self.prev)
        x = x[:d]
        run = np.where(np.isfinite(x) & (x == self.prev), self.run + 1, 0)
        return np.where(self.seen >= self.warmup, frozen_evidence(run, self.rate), 0.0)

    def score_many(self, X: FloatArray) -> FloatArray:
        X = as_rows(X, len(self.features))
        return np.array([self._scores(row).max(initial=0.0) for row in X])

    def learn_many(self, X: FloatArray) -> None:
        for row in as_rows(X, len(self.features)):
            x = row[: len(self.prev)]
            self.prev, self.run, self.rate, self.seen = frozen_step(
                self.prev, self.run, self.rate, self.seen, x, self.alpha
            )

    def state(self) -> dict[str, Any]:
        return {
            "prev": pack(self.prev),
            "rate": pack(self.rate),
            "run": self.run.tolist(),
            "seen": self.seen.tolist(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.prev, self.rate = unpack(state["prev"]), unpack(state["rate"])
        self.run = np.asarray(state["run"], dtype=np.int64)
        self.seen = np.asarray(state["seen"], dtype=np.int64)
