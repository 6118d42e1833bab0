"""Streaming robust z-score: EWMA level, EW mean absolute deviation, level-shift re-anchoring.

Per series: an exponentially weighted mean (the level) and an EW mean absolute deviation scaled
to a sigma (x1.2533, exact for normal data), with a floor relative to the level so a flat series
(a fan at constant speed) does not divide by almost nothing. The first samples use a running mean
(weight ``max(alpha, 1/(n+1))``) so the warm-up converges fast. Score first, then learn; samples
beyond ``threshold`` sigmas are outliers and are not learned unless ``learn_on_anomaly``.

Not learning outliers has one failure mode: a lasting level shift (a GPU moved to a hotter job)
stays an outlier forever and fires forever. So outliers of one sign in a row are counted, and
after ``shift_after`` of them the level is re-anchored to their mean (the scale is kept: a step
does not change the noise). A genuine step still fires for ``shift_after`` samples, then the alert
resolves on the new level. (A drift slow enough to stay under the threshold is learned: as level,
and while it lasts as spread.)

Three forms of one set of formulas: :class:`RobustBank` (vectorised over thousands of series,
state in columns, used by the live ``zscore`` stage), :class:`RobustZ` (the ``Detector`` for one
stream of feature vectors: one bank slot per feature, score = max |z|) and :class:`RobustStat`
(a scalar twin for the low-volume event paths, such as a training job's loss).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.columns import ArrayStore, ColumnStore, IntArray

from vigil.config import FrozenModel, validate

MAD_TO_SIGMA = 1.2533  # sqrt(pi/2): mean absolute deviation to standard deviation, for normal data


class RobustConfig(FrozenModel):
    """The level/scale model; ``threshold`` gates learning and counts toward a level shift."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.02  # EWMA weight of a new sample
    threshold: Annotated[float, Field(gt=0)] = 6.0  # robust sigmas beyond which a sample is an outlier
    warmup: Annotated[int, Field(ge=2)] = 30  # samples learned before a series is scored
    learn_on_anomaly: bool = False
    # Scale floor relative to the level, plus an absolute floor for series that sit at zero.
    rel_floor: Annotated[float, Field(ge=0)] = 0.01
    abs_floor: Annotated[float, Field(gt=0)] = 1e-3
    # Consecutive same-sign outliers after which the level is re-anchored to their mean; 0: never.
    # 300 samples is 5 minutes at 1 Hz: long enough that a fault of a few minutes keeps firing.
    shift_after: Annotated[int, Field(ge=0)] = 300


class RobustBank:
    """The vectorised form: one slot per series in a :class:`ColumnStore`; 36 bytes per series."""

    def __init__(self, config: RobustConfig, store: ColumnStore, prefix: str = "") -> None:
        self.config, self.store, self.prefix = config, store, prefix
        self._names = {k: prefix + k for k in ("n", "mean", "mad", "run", "shift")}
        for key, dtype, fill in (
            ("n", np.int64, 0),  # samples learned
            ("mean", np.float64, 0.0),
            ("mad", np.float64, 0.0),
            ("run", np.int32, 0),  # signed count of consecutive outliers (+ above, - below the level)
            ("shift", np.float64, 0.0),  # mean of the outliers in the current run
        ):
            store.add_column(self._names[key], dtype, fill)

    def columns(self) -> list[str]:
        return list(self._names.values())

    def _col(self, key: str) -> Any:
        return self.store.col(self._names[key])

    def _z(self, n: Any, mean: Any, mad: Any, y: Any) -> FloatArray:
        """Robust z (broadcasting: ``y`` may be a 2-D block over the slots); 0 while warming up or for NaN."""
        c = self.config
        scale = np.abs(mean) * c.rel_floor
        np.maximum(scale, mad * MAD_TO_SIGMA, out=scale)
        np.maximum(scale, c.abs_floor, out=scale)
        with np.errstate(invalid="ignore", over="ignore"):
            z = np.subtract(y, mean)
            z /= scale
        ok = np.isfinite(z)
        ok &= n >= c.warmup
        return np.where(ok, z, 0.0)

    def score(self, slots: IntArray, y: FloatArray) -> FloatArray:
        """Scores without learning; ``y`` is one value per slot, or a (rows, slots) block."""
        return self._z(self._col("n")[slots], self._col("mean")[slots], self._col("mad")[slots], y)

    def process(self, slots: IntArray, y: FloatArray) -> FloatArray:
        """Score one value per slot (each slot at most once), then learn it: one round of the stream."""
        c = self.config
        n_col, mean_col, mad_col = self._col("n"), self._col("mean"), self._col("mad")
        n, mean, mad = n_col[slots], mean_col[slots], mad_col[slots]
        z = self._z(n, mean, mad, y)
        valid = np.isfinite(y)
        outlier = np.abs(z) > c.threshold
        learn = valid if c.learn_on_anomaly else valid & ~outlier
        youngest = int(n.min()) if n.size else 0
        if youngest == 0:  # some series start now: their first sample is the level, exactly
            self._learn_first(slots, y, n, mean, mad, learn)
        else:
            # Steady state in place: a weight of 0 leaves a series unchanged (delta is 0 where y is NaN).
            weight = learn * (c.alpha if youngest + 1 >= 1 / c.alpha else np.maximum(c.alpha, 1.0 / (n + 1)))
            delta = np.subtract(y, mean, out=np.zeros_like(mean), where=valid)
            spread = np.abs(delta)
            spread -= mad
            spread *= weight
            mad += spread
            delta *= weight
            mean += delta
            mean_col[slots], mad_col[slots] = mean, mad
        n_col[slots] = n + learn
        if c.shift_after:
            self._shift(slots, y, z, valid, outlier)
        return z

    def _learn_first(self, slots: IntArray, y: FloatArray, n: Any, mean: Any, mad: Any, learn: Any) -> None:
        alpha = np.maximum(self.config.alpha, 1.0 / (n + 1))
        delta = y - mean
        first = n == 0
        with np.errstate(invalid="ignore"):
            new_mean = np.where(first, y, mean + alpha * delta)
            new_mad = np.where(first, 0.0, mad + alpha * (np.abs(delta) - mad))
        self._col("mean")[slots] = np.where(learn, new_mean, mean)
        self._col("mad")[slots] = np.where(learn, new_mad, mad)

    def _shift(self, slots: IntArray, y: FloatArray, z: FloatArray, valid: Any, outlier: Any) -> None:
        """Outlier runs; only the few series with an outlier now or a run open are touched."""
        run_col = self._col("run")
        run = run_col[slots]
        touched = np.flatnonzero(outlier | (run != 0))
        if not touched.size:
            return
        slots, run, outlier = slots[touched], run[touched], outlier[touched]
        y, z, valid = y[touched], z[touched], valid[touched]
        step = np.where(outlier, np.sign(z), 0).astype(np.int32)
        new_run = np.where(run * step > 0, run + step, step)
        new_run = np.where(valid, new_run, run)  # a missing sample does not break a run
        k = np.abs(new_run)
        shift_col = self._col("shift")
        shift = shift_col[slots]
        with np.errstate(invalid="ignore"):
            running = shift + (y - shift) / np.maximum(k, 1)
        new_shift = np.where(outlier, np.where(k == 1, y, running), shift)
        adopt = k >= self.config.shift_after
        if adopt.any():
            self._col("mean")[slots[adopt]] = new_shift[adopt]
            new_run[adopt] = 0
        run_col[slots] = new_run
        shift_col[slots] = new_shift


@dataclass(slots=True)
class RobustStat:
    """The scalar twin of :class:`RobustBank` (same formulas, one series, plain floats)."""

    n: int = 0
    mean: float = 0.0
    mad: float = 0.0
    run: int = 0
    shift: float = 0.0

    def score(self, y: float, config: RobustConfig) -> float:
        if self.n < config.warmup or not math.isfinite(y):
            return 0.0
        scale = max(self.mad * MAD_TO_SIGMA, config.rel_floor * abs(self.mean), config.abs_floor)
        z = (y - self.mean) / scale
        return z if math.isfinite(z) else 0.0

    def learn(self, y: float, alpha: float) -> None:
        if not math.isfinite(y):
            return
        if self.n == 0:
            self.mean, self.mad = y, 0.0
        else:
            a = max(alpha, 1.0 / (self.n + 1))
            delta = y - self.mean
            self.mean += a * delta
            self.mad += a * (abs(delta) - self.mad)
        self.n += 1

    def process(self, y: float, config: RobustConfig) -> float:
        """Score, learn unless an outlier, track outlier runs and re-anchor after a lasting shift."""
        z = self.score(y, config)
        if not math.isfinite(y):
            return z
        outlier = abs(z) > config.threshold
        if config.learn_on_anomaly or not outlier:
            self.learn(y, config.alpha)
        if not config.shift_after:
            return z
        if not outlier:
            self.run = 0
            return z
        step = 1 if z > 0 else -1
        self.run = self.run + step if self.run * step > 0 else step
        k = abs(self.run)
        self.shift = y if k == 1 else self.shift + (y - self.shift) / k
        if k >= config.shift_after:
            self.mean, self.run = self.shift, 0
        return z

    def dump(self) -> list[float]:
        return [self.n, self.mean, self.mad, self.run, self.shift]

    @classmethod
    def load(cls, raw: Sequence[float]) -> RobustStat:
        """Also reads the three-number form written before level-shift tracking existed."""
        run, shift = (int(raw[3]), float(raw[4])) if len(raw) >= 5 else (0, 0.0)
        return cls(int(raw[0]), float(raw[1]), float(raw[2]), run, shift)


class RobustZ(Detector):
    """One stream of feature vectors; each feature is a robust z series, the score is max |z|."""

    name = "robust_z"
    version = 1
    Options = RobustConfig
    calibrated = True

    def __init__(self, features: Sequence[str] = (), options: RobustConfig | None = None) -> None:
        super().__init__(features)
        self.config = options if options is not None else RobustConfig()
        self.store = ArrayStore(len(self.features))
        self.bank = RobustBank(self.config, self.store)

    @classmethod
    def make_bank(
        cls, options: Mapping[str, Any], store: ColumnStore, prefix: str = "", key: str = "options"
    ) -> RobustBank:
        return RobustBank(validate(RobustConfig, dict(options), key), store, prefix)

    def _grow(self, n_features: int) -> None:
        self.store.ensure(n_features)

    def _slots(self, X: FloatArray) -> IntArray:
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected rows of {len(self.features)} features {self.features}, got shape {X.shape}")
        return np.arange(len(self.features), dtype=np.intp)

    def explain_many(self, X: FloatArray) -> FloatArray:
        """|z| of every feature of every row against the current state (nothing learned)."""
        X = np.asarray(X, dtype=np.float64)
        return np.abs(self.bank.score(self._slots(X), X))

    def score_many(self, X: FloatArray) -> FloatArray:
        Z = self.explain_many(X)
        return Z.max(axis=1) if Z.shape[1] else np.zeros(len(Z))

    def learn_many(self, X: FloatArray) -> None:
        X = np.asarray(X, dtype=np.float64)
        slots = self._slots(X)
        for row in X:
            self.bank.process(slots, row)

    def process_many(self, X: FloatArray) -> FloatArray:
        X = np.asarray(X, dtype=np.float64)
        slots = self._slots(X)
        out = np.zeros(len(X))
        for i, row in enumerate(X):
            if slots.size:
                out[i] = np.abs(self.bank.process(slots, row)).max()
        return out

    def state(self) -> dict[str, Any]:
        size = len(self.features)
        return {name: self.store.col(name)[:size].tolist() for name in self.bank.columns()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.store = ArrayStore(len(self.features))  # fresh columns: nothing left from before
        self.bank = RobustBank(self.config, self.store)
        for name in self.bank.columns():
            values = np.asarray(state[name], dtype=self.store.col(name).dtype)
            if values.shape != (len(self.features),):
                raise ValueError(f"state column {name!r} has {values.size} values for {len(self.features)} features")
            self.store.col(name)[: values.size] = values
