"""Alarm thresholds from normal data that carry over to data the model has not seen.

A detector's score has no unit a threshold can be written in once for every host: a reconstruction
error of 3 is a shrug on one server and an incident on another. These tools put a threshold (or a
score) into a unit that means the same thing everywhere, learnt only from *calibration scores*:
the model's scores of normal data it did not learn from (a held-back tail of train, or its own
past scores online).

- :func:`fit_tail` / :class:`Tail`: peaks over threshold (Pickands-Balkema-de Haan): above a
  high empirical quantile ``level`` of the calibration scores, the excesses follow a generalised
  Pareto distribution (GPD), fitted by maximum likelihood (Grimshaw's one-dimensional profile,
  searched with scipy). Its quantile at a *risk*
  ``q`` (the chance that a normal score exceeds it) extrapolates beyond the largest calibration
  score, which a plain quantile cannot (SPOT, Siffer et al., KDD 2017).
- :class:`Spot`: the streaming form of the same: scores above ``level`` that stay below the alarm
  threshold are new peaks and refine the fit; alarms are never learnt. ``depth > 0`` is DSPOT:
  the tail is fitted to the score minus the mean of the last ``depth`` normal scores, so a slow
  drift of the score's level does not move the alarm rate.
- :class:`TailCalibrator`: a score as its tail probability under the calibration scores (empirical
  in the body, the GPD beyond ``level``) and its *surprise* ``-log10 p``: a unit that is comparable
  across hosts and across detectors (so scores can be averaged into an ensemble).
- :func:`conformal_threshold`: split conformal: the smallest threshold that at most a share
  ``alpha`` of the calibration scores exceed, with the ``(n + 1)`` finite-sample correction.
- :func:`budget_threshold`: per-host alarm budget: the lowest threshold at which the calibration
  scores (taken as normal: every alarm on them is false) send at most so many :func:`pages`
  (alarms closer than a gap are one episode, as a pager groups them; an episode left open pages
  again every ``repeat`` samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.stats import genpareto

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LEVEL = 0.98  # SPOT's usual initial threshold: the tail is the top 2% of the calibration scores
MIN_PEAKS = 10  # fewer excesses than this: an exponential tail (shape 0) with the mean excess as scale
THETA_RANGE = 1e3  # the profile search for shape / scale goes up to this many times 1 / mean excess
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Tail:
    """A GPD over the excesses above ``level_value``: ``peaks`` of ``n`` calibration scores exceeded it."""

    level_value: float
    shape: float  # xi: > 0 heavy tail, 0 exponential, < 0 bounded
    scale: float  # sigma
    n: int
    peaks: int

    def quantile(self, risk: float) -> float:
        """The score a normal observation exceeds with probability ``risk`` (SPOT's z_q)."""
        if not 0.0 < risk < 1.0:
            raise ValueError(f"risk must be in (0, 1), got {risk}")
        ratio = risk * self.n / max(self.peaks, 1)
        if ratio >= 1.0:  # the risk is not in the tail: the level itself is the best estimate
            return self.level_value
        if abs(self.shape) < 1e-9:
            return self.level_value - self.scale * math.log(ratio)
        return self.level_value + self.scale / self.shape * (float(ratio ** (-self.shape)) - 1.0)

    def probability(self, x: FloatArray) -> FloatArray:
        """P(normal score > x) for ``x`` above the level (the GPD survival times the tail share)."""
        excess = np.maximum(np.asarray(x, dtype=np.float64) - self.level_value, 0.0)
        share = self.peaks / self.n
        if self.scale <= 0:
            return np.where(excess > 0, 0.0, share)
        survival: FloatArray = genpareto.sf(excess, self.shape, loc=0.0, scale=self.scale)
        return share * survival


def fit_tail(scores: FloatArray, level: float = LEVEL) -> Tail:
    """The GPD of the excesses of ``scores`` over their ``level`` quantile (at least one score needed)."""
    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("no finite calibration scores")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    threshold = float(np.quantile(values, level))
    excesses = values[values > threshold] - threshold
    shape, scale = _gpd(excesses)
    return Tail(threshold, shape, scale, len(values), len(excesses))


def _gpd(excesses: FloatArray) -> tuple[float, float]:
    """(shape, scale) by maximum likelihood; an exponential tail when there are too few peaks.

    Grimshaw's reduction (the SPOT paper's): with ``theta = shape / scale`` fixed, the likelihood is
    maximised by ``shape = mean(log(1 + theta y))``, which leaves a one-dimensional profile
    likelihood in ``theta``, maximised by scipy's bounded Brent search on each side of 0 (the
    exponential tail, ``theta -> 0``, is the candidate in between).
    """
    y = np.asarray(excesses, dtype=np.float64)
    mean = float(y.mean()) if len(y) else 0.0
    if len(y) < MIN_PEAKS or mean <= 0 or np.ptp(y) <= 0:
        return 0.0, mean

    def shape_of(theta: float) -> float:
        return float(np.mean(np.log1p(theta * y)))

    def loss(theta: float) -> float:  # minus the profile log-likelihood per peak
        shape = shape_of(theta)
        return math.log(shape / theta) + shape + 1.0 if shape / theta > 0 else math.inf

    best_theta, best_loss = 0.0, math.log(mean) + 1.0  # the exponential tail
    top = float(y.max())
    for low, high in ((-1.0 / top * (1 - 1e-6), -1e-9 / top), (1e-9 / mean, THETA_RANGE / mean)):
        found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-10 / mean})
        if found.success and float(found.fun) < best_loss:
            best_theta, best_loss = float(found.x), float(found.fun)
    if best_theta == 0.0:
        return 0.0, mean
    shape = shape_of(best_theta)
    return shape, shape / best_theta


class TailCalibrator:
    """Scores as tail probabilities under the calibration scores, and as surprise ``-log10 p``.

    Below the ``level`` quantile the probability is empirical (the share of calibration scores at
    or above the score, with the conformal ``+1``), above it the fitted GPD, so the surprise keeps
    growing past the largest calibration score instead of saturating there.
    """

    def __init__(self, calibration: FloatArray, level: float = LEVEL) -> None:
        values = np.asarray(calibration, dtype=np.float64)
        self.sorted = np.sort(values[np.isfinite(values)])
        self.tail = fit_tail(self.sorted, level)

    def probability(self, x: FloatArray) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        n = len(self.sorted)
        at_or_above = n - np.searchsorted(self.sorted, x, side="left")
        body = (1.0 + at_or_above) / (n + 1.0)
        p: FloatArray = np.where(x > self.tail.level_value, self.tail.probability(x), body)
        return np.clip(np.nan_to_num(p, nan=1.0), 1e-300, 1.0)

    def surprise(self, x: FloatArray) -> FloatArray:
        out: FloatArray = -np.log10(self.probability(x))
        return out


def conformal_threshold(calibration: FloatArray, alpha: float) -> float:
    """Split conformal: exceeded by a normal score with probability at most ``alpha`` (exchangeable data)."""
    values = np.sort(np.asarray(calibration, dtype=np.float64))
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rank = math.ceil((len(values) + 1) * (1.0 - alpha))  # 1-based order statistic
    return float(values[-1]) if rank > len(values) else float(values[rank - 1])


def episodes(alarms: BoolArray, gap: int) -> IntArray:
    """Alarm episodes as rows ``[first, last + 1)``: alarms at most ``gap`` samples apart are one episode.

    ``gap = 1`` joins only adjacent alarms (plain runs); a pager that holds an alert open while it
    keeps firing within a few minutes is ``gap`` = those minutes in samples.
    """
    if gap < 1:
        raise ValueError(f"gap must be >= 1 sample, got {gap}")
    at = np.flatnonzero(np.asarray(alarms, dtype=bool))
    if len(at) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(at) > gap)
    starts = np.concatenate(([at[0]], at[breaks + 1]))
    stops = np.concatenate((at[breaks], [at[-1]])) + 1
    return np.stack((starts, stops), axis=1).astype(np.int64)


def pages(alarms: BoolArray, merge: int, repeat: int) -> int:
    """Notifications a pager sends for ``alarms``: one per episode (:func:`episodes` with ``merge``), and one
    more for every further ``repeat`` samples the episode stays open (Alertmanager's ``repeat_interval``)."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1 sample, got {repeat}")
    spans = episodes(alarms, merge)
    return int(np.sum(-(-(spans[:, 1] - spans[:, 0]) // repeat))) if len(spans) else 0


def budget_threshold(calibration: FloatArray, allowed: float, merge: int, repeat: int, candidates: int = 256) -> float:
    """The lowest threshold (``score > t`` alarms) at which ``calibration``, taken as normal, sends at most
    ``allowed`` :func:`pages`; thresholds tried: the scores' upper quantiles (``candidates``, top down)."""
    values = np.asarray(calibration, dtype=np.float64)
    levels = np.unique(np.quantile(values, np.linspace(1.0, 0.5, candidates)))[::-1]
    best = float(levels[0])
    for level in levels:
        if pages(values > level, merge, repeat) > allowed:
            break
        best = float(level)
    return best


class Spot:
    """Streaming SPOT (``depth=0``) or DSPOT (``depth > 0``) over one score stream, started from calibration
    scores; causal: each score is judged against the threshold made from the scores before it."""

    def __init__(self, calibration: FloatArray, risk: float, level: float = LEVEL, depth: int = 0) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        values = np.asarray(calibration, dtype=np.float64)
        self.risk, self.depth = risk, depth
        self.window = list(values[-depth:]) if depth else []  # the last normal scores: DSPOT's local level
        base = values - _trailing_mean(values, depth) if depth else values
        tail = fit_tail(base, level)
        self.level_value, self.n = tail.level_value, tail.n
        self.excesses = list(base[base > tail.level_value] - tail.level_value)
        self.fitted_at = len(self.excesses)
        self.tail = tail
        self.threshold = tail.quantile(risk)

    def _refit(self) -> None:
        excesses = np.asarray(self.excesses)
        shape, scale = _gpd(excesses)
        self.tail = Tail(self.level_value, shape, scale, self.n, len(excesses))
        self.fitted_at = len(excesses)
        self.threshold = self.tail.quantile(self.risk)

    def _observe(self, z: float) -> None:
        """Learn one normal (non-alarm) score's part above the level."""
        self.n += 1
        if z > self.level_value:
            self.excesses.append(z - self.level_value)
            if len(self.excesses) >= 1.1 * self.fitted_at + 1:  # refit once the peaks grew by a tenth
                self._refit()
                return
        elif self.n % 64:  # the tail share shrinks as scores accumulate below the level: update now and then
            return
        self.tail = Tail(self.level_value, self.tail.shape, self.tail.scale, self.n, len(self.excesses))
        self.threshold = self.tail.quantile(self.risk)

    def run(self, scores: FloatArray) -> tuple[BoolArray, FloatArray]:
        """Alarms and the threshold each score was judged against (in the score's own units)."""
        x = np.asarray(scores, dtype=np.float64)
        alarms = np.zeros(len(x), dtype=bool)
        thresholds = np.empty(len(x))
        window, total = self.window, float(sum(self.window))
        for i, value in enumerate(x.tolist()):
            local = total / len(window) if window else 0.0
            thresholds[i] = self.threshold + local
            if value - local > self.threshold:
                alarms[i] = True  # an alarm is never learnt
                continue
            if window:
                total += value - window.pop(0)
                window.append(value)
            self._observe(value - local)
        return alarms, thresholds


def _trailing_mean(x: FloatArray, depth: int) -> FloatArray:
    """Mean of the ``depth`` values before each value (the first value: itself)."""
    cum = np.concatenate(([0.0], np.cumsum(x)))
    stop = np.arange(len(x))
    start = np.maximum(stop - depth, 0)
    width = np.maximum(stop - start, 1)
    out: FloatArray = np.where(stop > 0, (cum[stop] - cum[start]) / width, x[0] if len(x) else 0.0)
    return out
