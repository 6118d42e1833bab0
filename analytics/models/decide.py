"""The decision layer after a detector (Merlion's shape): calibrate → threshold → post-rule → reason.

1. **Calibration** puts every detector's score in one unit, robust sigmas, so one threshold means
   the same thing for all of them. ``none``: the score already is a robust z (``robust_z`` is).
   ``running``: the score's robust z against the same series' own recent scores (the EWMA/MAD
   model of ``robust.py``, no level re-anchoring), for scores with no unit of their own (an
   isolation depth, a reconstruction error); 36 bytes per series, no fitting step, and it adapts
   when a model's score scale drifts. The reason also gives the two-sided normal tail probability
   of the calibrated score, a reading aid (exact only for normal data).
2. **Threshold** with a direction (``both``, ``up``: only high scores, ``down``).
3. **Post-rule**: fire on an exceeding sample when ``min_hits`` of the last ``window`` scored
   samples exceed the threshold (one spike does not page); hysteresis: a firing series resolves after ``clear_after``
   consecutive samples below ``clear_threshold`` (default half the threshold), so a score hovering
   at the threshold does not flap; ``cooldown``: after a resolve the series cannot fire again for
   that many seconds of event time.
4. **Reason**: a machine-readable dict (detector, raw and calibrated score, tail probability,
   threshold, hits/window, top feature) that goes into the ``Detection``.

Missing samples (NaN) are no evidence either way: they change no counter. Two forms of the same
rules: :class:`DecideBank` over many series (state in columns, used by the live ``zscore`` stage)
and :class:`Decider` for one stream (with :class:`PostRule`, its state machine, which the training
detector also uses on its own exceed/calm conditions).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator
from vigil.analytics.models.columns import ColumnStore, IntArray
from vigil.analytics.models.robust import RobustBank, RobustConfig, RobustStat

from vigil.config import Duration, FrozenModel
from vigil.events import Decision

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
MAX_WINDOW = 16  # the window is a bit history in a uint16


class DecideConfig(FrozenModel):
    threshold: Annotated[float, Field(gt=0)] = 6.0  # calibrated score (robust sigmas) that counts as a hit
    clear_threshold: Annotated[float, Field(gt=0)] | None = None  # calm below this; None: threshold / 2
    direction: Literal["both", "up", "down"] = "both"
    min_hits: Annotated[int, Field(ge=1)] = 3
    window: Annotated[int, Field(ge=1, le=MAX_WINDOW)] = 5  # the "last W samples" min_hits counts in
    clear_after: Annotated[int, Field(ge=1)] = 10  # consecutive calm samples before resolving
    cooldown: Duration = 0.0  # seconds after a resolve during which the series does not fire again
    calibration: Literal["none", "running"] = "none"

    @model_validator(mode="after")
    def _consistent(self) -> DecideConfig:
        if self.min_hits > self.window:
            raise ValueError(f"min_hits ({self.min_hits}) cannot exceed window ({self.window})")
        if self.clear_threshold is not None and self.clear_threshold > self.threshold:
            raise ValueError(f"clear_threshold ({self.clear_threshold}) cannot exceed threshold ({self.threshold})")
        return self

    @property
    def t_clear(self) -> float:
        return self.clear_threshold if self.clear_threshold is not None else self.threshold / 2

    def calibrator(self) -> RobustConfig:
        """The running calibrator's model: scores beyond the threshold are not learned, no re-anchoring."""
        return RobustConfig(threshold=self.threshold, shift_after=0)


@functools.cache
def _popcount16() -> npt.NDArray[np.uint8]:
    bits = np.unpackbits(np.arange(1 << 16, dtype=">u2").view(np.uint8)).reshape(-1, 16)
    counts: npt.NDArray[np.uint8] = bits.sum(axis=1).astype(np.uint8)
    return counts


def tail_probability(calibrated: float) -> float:
    """Two-sided normal tail of a z, to 3 significant digits."""
    return float(f"{math.erfc(abs(calibrated) / math.sqrt(2)):.3g}")


def make_reason(
    config: DecideConfig,
    detector: str,
    score: float,
    calibrated: float,
    hits: int,
    feature: str | None = None,
) -> dict[str, Any]:
    """The machine-readable why of a decision; the same keys from the bank and the scalar form."""
    return {
        "detector": detector,
        "score": round(float(score), 4),
        "calibrated": round(float(calibrated), 4),
        "calibration": config.calibration,
        "tail_probability": tail_probability(calibrated),
        "threshold": config.threshold,
        "clear_threshold": config.t_clear,
        "direction": config.direction,
        "hits": int(hits),
        "min_hits": config.min_hits,
        "window": config.window,
        "feature": feature,
    }


def _magnitude(direction: str, score: Any) -> Any:
    """How far a calibrated score goes in the direction that matters."""
    if direction == "both":
        return np.abs(score)
    return score if direction == "up" else -score


class DecideBank:
    """The vectorised decision layer: one slot per series; 31 bytes per series (+36 when calibrating)."""

    def __init__(self, config: DecideConfig, store: ColumnStore, prefix: str = "") -> None:
        self.config, self.store, self.prefix = config, store, prefix
        self._mask = np.uint16((1 << config.window) - 1)
        self._pop = _popcount16()
        self._names = {k: prefix + k for k in ("hist", "below", "active", "last", "since", "quiet")}
        for key, dtype, fill in (
            ("hist", np.uint16, 0),  # bit i: the sample i steps ago exceeded
            ("below", np.int32, 0),  # consecutive calm samples while firing
            ("active", np.bool_, False),
            ("last", np.float64, 0.0),  # last calibrated score
            ("since", np.float64, np.nan),  # event time the series fired
            ("quiet", np.float64, -np.inf),  # no firing before this event time (cool-down)
        ):
            store.add_column(self._names[key], dtype, fill)
        self.calibrator = (
            RobustBank(config.calibrator(), store, prefix + "cal_") if config.calibration == "running" else None
        )

    def columns(self) -> list[str]:
        return list(self._names.values()) + (self.calibrator.columns() if self.calibrator else [])

    def col(self, key: str) -> Any:
        return self.store.col(self._names[key])

    def calibrate(self, slots: IntArray, score: FloatArray, valid: BoolArray) -> FloatArray:
        if self.calibrator is None:
            return score
        return self.calibrator.process(slots, np.where(valid, score, np.nan))  # a gap teaches it nothing

    def update(
        self, slots: IntArray, score: FloatArray, ts: FloatArray, valid: BoolArray
    ) -> tuple[BoolArray, BoolArray]:
        """One round (each slot at most once): the masks of series that fire and that resolve now."""
        c = self.config
        calibrated = self.calibrate(slots, score, valid)
        magnitude = _magnitude(c.direction, calibrated)
        hist_col, last_col = self.col("hist"), self.col("last")
        exceed = valid & (magnitude > c.threshold)
        old = hist_col[slots]
        hist = (old << 1) | exceed
        hist &= self._mask
        if valid.all():  # the usual round: no gaps, nothing to keep
            hist_col[slots] = hist
            last_col[slots] = calibrated
        else:
            hist = np.where(valid, hist, old)
            hist_col[slots] = hist
            last_col[slots] = np.where(valid, calibrated, last_col[slots])
        active = self.col("active")[slots]
        # A series fires on an exceeding sample; only those few need their hits counted.
        fire = np.zeros_like(exceed)
        candidates = np.flatnonzero(exceed & ~active)
        if candidates.size:
            ok = self._pop[hist[candidates]] >= c.min_hits
            if c.cooldown:
                ok &= ts[candidates] >= self.col("quiet")[slots[candidates]]
            fire[candidates[ok]] = True
        resolve = np.zeros_like(fire)
        if active.any():  # below is 0 for every series not firing, so only firing ones need the work
            below_col = self.col("below")
            below = below_col[slots]
            calm = np.where(magnitude < c.t_clear, below + 1, 0)
            below = np.where(active, np.where(valid, calm, below), 0)
            resolve = active & (below >= c.clear_after)
            below_col[slots] = np.where(resolve, 0, below)
        if fire.any() or resolve.any():
            self.col("active")[slots] = (active | fire) & ~resolve
            self.col("since")[slots[fire]] = ts[fire]
            if c.cooldown:
                self.col("quiet")[slots[resolve]] = ts[resolve] + c.cooldown
        return fire, resolve

    def hits(self, slot: int) -> int:
        return int(self._pop[self.col("hist")[slot]])

    def reason(self, slot: int, detector: str, score: float, feature: str | None = None) -> dict[str, Any]:
        return make_reason(self.config, detector, score, float(self.col("last")[slot]), self.hits(slot), feature)


@dataclass(slots=True)
class PostRule:
    """Min-hits-in-window, hysteresis and cool-down for one series, on the caller's exceed/calm."""

    hist: int = 0
    active: bool = False
    below: int = 0
    quiet_until: float = -math.inf

    def update(self, exceed: bool, calm: bool, config: DecideConfig, ts: float = math.nan) -> Decision | None:
        """``ts`` (event time) is needed only for the cool-down."""
        self.hist = ((self.hist << 1) | int(exceed)) & ((1 << config.window) - 1)
        if not self.active:
            if exceed and self.hist.bit_count() >= config.min_hits and not ts < self.quiet_until:
                self.active, self.below = True, 0
                return "firing"
            return None
        self.below = self.below + 1 if calm else 0
        if self.below >= config.clear_after:
            self.active, self.below = False, 0
            if config.cooldown and math.isfinite(ts):
                self.quiet_until = ts + config.cooldown
            return "resolved"
        return None

    def dump(self) -> list[float]:
        return [self.hist, int(self.active), self.below, self.quiet_until]

    @classmethod
    def load(cls, raw: Sequence[float]) -> PostRule:
        """Also reads the three-number form written before the cool-down existed."""
        quiet = float(raw[3]) if len(raw) >= 4 else -math.inf
        return cls(int(raw[0]), bool(raw[1]), int(raw[2]), quiet)


@dataclass(slots=True)
class Decider:
    """The whole layer for one stream of scores: the scalar twin of :class:`DecideBank`."""

    config: DecideConfig
    detector: str = ""
    post: PostRule = field(default_factory=PostRule)
    calibrator: RobustStat | None = None
    last: float = 0.0  # last calibrated score
    since: float = math.nan
    _calibration: RobustConfig | None = None

    def __post_init__(self) -> None:
        if self.config.calibration == "running":
            self._calibration = self.config.calibrator()
            if self.calibrator is None:
                self.calibrator = RobustStat()

    def calibrate(self, score: float) -> float:
        if self.calibrator is None or self._calibration is None:
            return score
        return self.calibrator.process(score, self._calibration)

    def update(self, score: float, ts: float) -> Decision | None:
        c = self.config
        if not math.isfinite(score):
            return None
        calibrated = self.calibrate(score)
        magnitude = float(_magnitude(c.direction, calibrated))
        self.last = calibrated
        decision = self.post.update(magnitude > c.threshold, magnitude < c.t_clear, c, ts)
        if decision == "firing":
            self.since = ts
        return decision

    def reason(
        self, score: float, features: Sequence[str] = (), contributions: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """``contributions`` (one per feature, e.g. a row of ``explain_many``) names the top feature."""
        feature = None
        if contributions is not None and len(features):
            values = np.asarray(contributions, dtype=np.float64)
            if np.isfinite(values).any():
                feature = features[int(np.nanargmax(values))]
        return make_reason(self.config, self.detector, score, self.last, self.post.hist.bit_count(), feature)
