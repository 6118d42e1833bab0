"""Contextual novelty scored by its likelihood: a streaming detector for one value per series.

Per feature, four stages, all causal (a record is scored from the records before it, then learnt):

1. **Contextual novelty** (the sequence-memory idea behind HTM and CAD): values are quantised into
   ``bins`` equal bins over the warm-up range (plus one overflow bin each side); for every context
   length ``k`` in ``contexts`` the record's ``k``-gram of bins (itself and the ``k - 1`` before it)
   is *novel* if it never occurred before. The raw score is the fraction of context lengths for
   which the record is novel: 0 for a familiar pattern, 1 for a value never seen in any context.
2. **Anomaly likelihood** (Numenta's idea): raw novelty is noisy and its normal level differs from
   series to series, so the score is how improbable the recent mean novelty (last ``short``
   records) is under a normal fitted to that mean's history (last ``long`` records, from half-way
   through the warm-up, standard deviation floored at ``std_floor``). Its tail probability ``p`` is
   turned into ``log(p) / log(1e-10)``, 0..1, so one threshold means the same on every series.
   After a red tail (``p <= red``) further consecutive red tails are demoted to ``yellow``.
3. **New extremes**: a value beyond the range seen so far by more than ``extreme_margin`` of that
   range scores 1.0 (a level never seen is anomalous whatever its context).
4. **Re-detection suppression**: a score not above every score of the previous ``refractory``
   records is multiplied by ``damping`` -- an incident is reported once, at its strongest start,
   instead of once per record it lasts.

Nothing is scored during the ``warmup`` records: they fix the quantisation range and fill the
pattern memory. A row's score is the maximum over its features. Parameters were fixed on half of
the NAB corpus (see ``vigil eval nab``) and are not tuned per series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, model_validator
from scipy.special import ndtr
from vigil.analytics.models.base import Detector, FloatArray

from vigil.config import FrozenModel, validate

IntArray = npt.NDArray[np.int64]
LOG_FLOOR = math.log(1e-10)  # the log-score saturates at tail probability 1e-10


class ContextLikelihoodConfig(FrozenModel):
    warmup: Annotated[int, Field(ge=10)] = 750
    bins: Annotated[int, Field(ge=2, le=64)] = 20
    range_margin: Annotated[float, Field(ge=0.0)] = 0.1
    contexts: tuple[Annotated[int, Field(ge=1, le=4)], ...] = (1, 2, 3)
    short: Annotated[int, Field(ge=1)] = 10
    long: Annotated[int, Field(ge=2)] = 8640
    std_floor: Annotated[float, Field(gt=0.0)] = 0.01
    red: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-5
    yellow: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-3
    extreme_margin: Annotated[float, Field(ge=0.0)] = 0.05
    refractory: Annotated[int, Field(ge=0)] = 100
    damping: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5

    @model_validator(mode="after")
    def _check(self) -> ContextLikelihoodConfig:
        if not self.contexts or len(set(self.contexts)) != len(self.contexts):
            raise ValueError("contexts must list distinct context lengths")
        if self.yellow <= self.red:
            raise ValueError("yellow must be above red")
        return self


class _Stream:
    """The learnt state of one feature; ``advance`` scores and learns a run of finite values."""

    def __init__(self, cfg: ContextLikelihoodConfig) -> None:
        self.cfg = cfg
        self.n = 0  # values learnt
        self.warm: list[float] = []  # warm-up values, until the range is fixed
        self.lo = 0.0
        self.hi = 0.0
        width = cfg.bins + 2
        self.seen = [np.zeros(width**k, dtype=np.bool_) for k in cfg.contexts]
        self.last_bins = np.zeros(max(cfg.contexts) - 1, dtype=np.int64)  # the context before the next value
        self.vmin = math.nan
        self.vmax = math.nan
        self.raw_tail = np.empty(0)  # last short-1 raw novelties
        self.hist = np.empty(0)  # last `long` mean novelties eligible for the likelihood fit
        self.prev_red = False
        self.recent = np.empty(0)  # last `refractory` scores before suppression

    @property
    def ready(self) -> bool:
        return not self.warm and self.n >= self.cfg.warmup

    def process(self, values: FloatArray) -> FloatArray:
        out = np.zeros(len(values))
        start = 0
        if not self.ready:
            start = min(self.cfg.warmup - len(self.warm), len(values))
            self.warm.extend(float(v) for v in values[:start])
            if len(self.warm) == self.cfg.warmup:
                self._fix_range()
        if start < len(values):
            out[start:] = self._advance(values[start:])
        return out

    def _fix_range(self) -> None:
        warm = np.asarray(self.warm)
        lo, hi = float(warm.min()), float(warm.max())
        span = (hi - lo) or (abs(hi) or 1.0)
        self.lo, self.hi = lo - self.cfg.range_margin * span, hi + self.cfg.range_margin * span
        self.warm = []
        self._advance(warm)  # learn the warm-up patterns; their scores are 0 by construction

    def _advance(self, v: FloatArray) -> FloatArray:
        cfg = self.cfg
        m = len(v)
        g = self.n + np.arange(m)  # each value's position in the stream
        scoring = g >= cfg.warmup

        # 1. contextual novelty
        width = cfg.bins + 2
        bins = np.clip(np.floor((v - self.lo) / (self.hi - self.lo) * cfg.bins), -1, cfg.bins).astype(np.int64) + 1
        full = np.concatenate([self.last_bins, bins])
        pad = len(self.last_bins)
        raw = np.zeros(m)
        for table, k in zip(self.seen, cfg.contexts, strict=True):
            key = np.zeros(m, dtype=np.int64)
            for j in range(k):
                key = key * width + full[pad - j : pad - j + m]
            novel = ~table[key]
            first = np.zeros(m, dtype=np.bool_)
            first[np.unique(key, return_index=True)[1]] = True
            raw += novel & first
            table[key] = True
        raw /= len(cfg.contexts)
        if pad:
            self.last_bins = full[-pad:]

        # 2. anomaly likelihood of the recent mean novelty
        rawfull = np.concatenate([self.raw_tail, raw])
        csum = np.r_[0.0, np.cumsum(rawfull)]
        end = np.arange(len(self.raw_tail), len(rawfull)) + 1
        begin = np.maximum(end - cfg.short, 0)
        mean_raw = (csum[end] - csum[begin]) / (end - begin)
        self.raw_tail = rawfull[-(cfg.short - 1) :] if cfg.short > 1 else np.empty(0)

        fit_from = cfg.warmup // 2  # the distribution is fitted on records after half the warm-up
        eligible = mean_raw[g >= fit_from]
        pool = np.concatenate([self.hist, eligible])
        # The pool holds consecutive positions: the kept history ends just before this run.
        pool_start = self.n - len(self.hist) if len(self.hist) else max(fit_from, self.n)
        s1 = np.r_[0.0, np.cumsum(pool)]
        s2 = np.r_[0.0, np.cumsum(pool * pool)]
        hi_i = np.clip(g - pool_start, 0, len(pool))
        lo_i = np.clip(g - cfg.long - pool_start, 0, len(pool))
        count = hi_i - lo_i
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = (s1[hi_i] - s1[lo_i]) / count
            var = (s2[hi_i] - s2[lo_i] - count * mu * mu) / (count - 1)
        sd = np.where(count > 1, np.sqrt(np.maximum(var, 0.0)), 0.0)
        sd = np.maximum(sd, cfg.std_floor)
        tail = np.where(scoring & (count > 0), ndtr(-(mean_raw - mu) / sd), 1.0)
        self.hist = pool[-cfg.long :]

        red = tail <= cfg.red
        prev = np.r_[self.prev_red, red[:-1]]
        tail = np.where(red & prev, cfg.yellow, tail)
        self.prev_red = bool(red[-1])
        score = np.clip(np.log(np.maximum(tail, 1e-10)) / LOG_FLOOR, 0.0, 1.0)

        # 3. new extremes, against the range of every earlier value
        ext = np.concatenate([[self.vmax], v])
        prior_max = np.fmax.accumulate(ext)[:-1]
        prior_min = np.fmin.accumulate(np.concatenate([[self.vmin], v]))[:-1]
        margin = cfg.extreme_margin * (prior_max - prior_min)
        with np.errstate(invalid="ignore"):
            extreme = scoring & ((v > prior_max + margin) | (v < prior_min - margin))
        score = np.where(extreme, 1.0, score)
        self.vmax, self.vmin = float(np.fmax(self.vmax, v.max())), float(np.fmin(self.vmin, v.min()))

        # 4. suppress what does not exceed the recent scores
        if cfg.refractory:
            before = np.concatenate([np.zeros(cfg.refractory - len(self.recent)), self.recent, score])
            recent_max = sliding_window_view(before[:-1], cfg.refractory).max(axis=1)
            self.recent = before[-cfg.refractory :]
            final = np.where(score > recent_max, score, cfg.damping * score)
        else:
            final = score
        self.n += m
        return final

    # -- state as plain lists and numbers
    def dump(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "warm": list(self.warm),
            "lo": self.lo,
            "hi": self.hi,
            "seen": [np.flatnonzero(t).tolist() for t in self.seen],
            "last_bins": self.last_bins.tolist(),
            "vmin": self.vmin,
            "vmax": self.vmax,
            "raw_tail": self.raw_tail.tolist(),
            "hist": self.hist.tolist(),
            "prev_red": self.prev_red,
            "recent": self.recent.tolist(),
        }

    @classmethod
    def load(cls, cfg: ContextLikelihoodConfig, raw: Mapping[str, Any]) -> _Stream:
        s = cls(cfg)
        s.n = int(raw["n"])
        s.warm = [float(x) for x in raw["warm"]]
        s.lo, s.hi = float(raw["lo"]), float(raw["hi"])
        for table, idx in zip(s.seen, raw["seen"], strict=True):
            table[np.asarray(idx, dtype=np.int64)] = True
        s.last_bins = np.asarray(raw["last_bins"], dtype=np.int64)
        s.vmin, s.vmax = float(raw["vmin"]), float(raw["vmax"])
        s.raw_tail = np.asarray(raw["raw_tail"], dtype=np.float64)
        s.hist = np.asarray(raw["hist"], dtype=np.float64)
        s.prev_red = bool(raw["prev_red"])
        s.recent = np.asarray(raw["recent"], dtype=np.float64)
        return s

    def copy(self) -> _Stream:
        return _Stream.load(self.cfg, self.dump())


class ContextLikelihood(Detector):
    name = "context_likelihood"
    version = 1

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"warmup": 100, "long": 400, "refractory": 10}

    def __init__(self, features: Sequence[str] = (), **options: Any) -> None:
        super().__init__(features)
        self.config = validate(ContextLikelihoodConfig, options, prefix=f"detector.{self.name}")
        self.streams = [_Stream(self.config) for _ in self.features]

    def _grow(self, n_features: int) -> None:
        self.streams += [_Stream(self.config) for _ in range(n_features - len(self.streams))]

    def _columns(self, X: FloatArray) -> FloatArray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] > len(self.features):
            raise ValueError(f"expected rows of at most {len(self.features)} features, got shape {X.shape}")
        return X

    def process_many(self, X: FloatArray) -> FloatArray:
        X = self._columns(X)
        out = np.zeros(len(X))
        for j in range(X.shape[1]):
            rows = np.flatnonzero(np.isfinite(X[:, j]))  # a missing value neither scores nor teaches
            if rows.size:
                out[rows] = np.maximum(out[rows], self.streams[j].process(X[rows, j]))
        return out

    def learn_many(self, X: FloatArray) -> None:
        self.process_many(X)

    def score_many(self, X: FloatArray) -> FloatArray:
        """Each row scored against the current state alone (rows do not see each other)."""
        X = self._columns(X)
        out = np.zeros(len(X))
        for j in range(X.shape[1]):
            for i in np.flatnonzero(np.isfinite(X[:, j])):
                out[i] = max(out[i], float(self.streams[j].copy().process(X[i : i + 1, j])[0]))
        return out

    def state(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(), "streams": [s.dump() for s in self.streams]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.config = validate(ContextLikelihoodConfig, state["config"], prefix=f"detector.{self.name}")
        self.streams = [_Stream.load(self.config, s) for s in state["streams"]]
