"""A detector setting with a train-only threshold: which scores, how smoothed, and how the threshold is made.

:class:`Honest` = a scorer of :data:`scorers.SCORERS` (or an ensemble of them, ``"a+b"``), a
causal trailing mean of ``smooth`` samples, and a :class:`Threshold` computed from the smoothed
calibration scores alone. Every threshold is written in a unit that means the same on every
entity (a probability, a number of pages per day, a number of robust spreads), so one setting,
chosen on some entities, carries over to others:

- ``conformal`` alpha: the split-conformal threshold exceeded by a share ``alpha`` of normal scores;
- ``spot`` risk: the GPD tail quantile at ``risk`` (SPOT's initial threshold);
- ``spot_stream`` / ``dspot`` risk: streaming SPOT (DSPOT with a 10-sample drift window) started
  from the calibration scores, updated over test by the non-alarm peaks (never by alarms);
- ``budget`` pages: the lowest threshold at which the calibration scores, taken as normal, would
  page at most ``pages`` times per day (the alarm-budget rule of :mod:`metrics`);
- ``iqr`` k: median plus ``k`` interquartile ranges of the calibration scores.

An ensemble averages its members' *surprise* (``-log10`` of each score's tail probability under
that member's own calibration scores, :class:`~vigil.analytics.models.calibrate.TailCalibrator`),
so members with unrelated units count alike; it is then thresholded like any score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from vigil.analytics.eval import metrics
from vigil.analytics.eval.metrics import FloatArray
from vigil.analytics.eval.scorers import SCORERS, Scores, causal_mean
from vigil.analytics.eval.smd_data import Machine
from vigil.analytics.models import calibrate

Method = Literal["conformal", "spot", "spot_stream", "dspot", "budget", "iqr"]
DSPOT_DEPTH = 10
Cache = dict[tuple[str, str], Scores]


@dataclass(frozen=True, slots=True)
class Threshold:
    method: Method
    value: float

    def margins(self, calibration: FloatArray, test: FloatArray, interval_s: float) -> FloatArray:
        """Each test score minus the threshold it is judged against (positive: an alarm)."""
        if self.method in ("spot_stream", "dspot"):
            depth = DSPOT_DEPTH if self.method == "dspot" else 0
            _, thresholds = calibrate.Spot(calibration, self.value, depth=depth).run(test)
            return test - thresholds
        return test - self.static(calibration, interval_s)

    def static(self, calibration: FloatArray, interval_s: float) -> float:
        if self.method == "conformal":
            return calibrate.conformal_threshold(calibration, self.value)
        if self.method == "spot":
            return calibrate.fit_tail(calibration).quantile(self.value)
        if self.method == "budget":
            days = len(calibration) * interval_s / calibrate.DAY_S
            merge, repeat = metrics.samples(metrics.MERGE_S, interval_s), metrics.samples(metrics.REPEAT_S, interval_s)
            return calibrate.budget_threshold(calibration, self.value * days, merge, repeat)
        if self.method == "iqr":
            q50, q75 = np.quantile(calibration, [0.5, 0.75])
            return float(q50 + self.value * (q75 - q50))
        raise ValueError(f"{self.method} has no static threshold")

    def describe(self) -> str:
        return {
            "conformal": "the split-conformal threshold at alpha={v:g} (exceeded by {v:.1%} of calibration scores)",
            "spot": "SPOT's GPD tail quantile at risk {v:g} (GPD fitted by scipy to the top 2% of calibration scores)",
            "spot_stream": "streaming SPOT at risk {v:g}, started from the calibration scores, refined by test peaks "
            "that are not alarms",
            "dspot": f"streaming DSPOT at risk {{v:g}} (drift window {DSPOT_DEPTH} samples)",
            "budget": "the lowest threshold at which the calibration scores would page at most {v:g} times a day",
            "iqr": "median + {v:g} x IQR of the calibration scores",
        }[self.method].format(v=self.value)


@dataclass(frozen=True, slots=True)
class Run:
    calibration: FloatArray  # smoothed calibration scores (or ensemble surprise)
    scores: FloatArray  # smoothed test scores (or ensemble surprise)
    margins: FloatArray  # test scores minus their thresholds


@dataclass(frozen=True, slots=True)
class Honest:
    scorer: str  # a key of SCORERS, or members joined by "+"
    smooth: int
    threshold: Threshold

    @property
    def detector(self) -> str:
        return self.scorer

    @property
    def members(self) -> list[str]:
        return self.scorer.split("+")

    def scores(self, machine: Machine, cache: Cache | None = None) -> tuple[FloatArray, FloatArray]:
        """Smoothed calibration and test scores (an ensemble's: the mean surprise of its members)."""
        key = (machine.name, f"{self.scorer} smooth={self.smooth}")
        if cache is not None and key in cache:
            return cache[key].calibration, cache[key].test
        calibration, test = self._scores(machine, cache)
        if cache is not None:
            cache[key] = Scores(calibration, test, -1)
        return calibration, test

    def _scores(self, machine: Machine, cache: Cache | None) -> tuple[FloatArray, FloatArray]:
        runs = [_cached(machine, name, cache) for name in self.members]
        start = max(run.start for run in runs)  # an ensemble calibrates on the stretch every member has
        parts = [self._smoothed(run, start) for run in runs]
        if len(parts) == 1:
            return parts[0]
        surprises = []
        for calibration, test in parts:
            tail = calibrate.TailCalibrator(calibration)
            surprises.append((tail.surprise(calibration), tail.surprise(test)))
        return np.mean([s[0] for s in surprises], axis=0), np.mean([s[1] for s in surprises], axis=0)

    def _smoothed(self, run: Scores, start: int) -> tuple[FloatArray, FloatArray]:
        raw = np.concatenate((run.calibration[start - run.start :], run.test))  # contiguous in time
        smoothed = causal_mean(raw, self.smooth)
        split = len(raw) - len(run.test)
        return smoothed[:split], smoothed[split:]

    def run(self, machine: Machine, cache: Cache | None = None) -> Run:
        calibration, scores = self.scores(machine, cache)
        return Run(calibration, scores, self.threshold.margins(calibration, scores, machine.interval_s))

    def with_scorer(self, scorer: str) -> Honest:
        return Honest(scorer, self.smooth, self.threshold)

    def describe(self) -> str:
        ensemble = " of the members' mean surprise (-log10 tail probability under each member's calibration scores)"
        return (
            f"Detector: {self.scorer}; score: causal trailing mean of {self.smooth} samples"
            f"{ensemble if len(self.members) > 1 else ''}; threshold: {self.threshold.describe()}. "
        )


def _cached(machine: Machine, name: str, cache: Cache | None) -> Scores:
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}: choose from {', '.join(SCORERS)} (or join them with '+')")
    key = (machine.name, name)
    if cache is not None and key in cache:
        return cache[key]
    scores = SCORERS[name](machine)
    if cache is not None:
        cache[key] = scores
    return scores
