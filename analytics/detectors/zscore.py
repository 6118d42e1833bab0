"""Streaming robust z-score per series, decided per entity (one alert per failing GPU or host).

Per slot: an EWMA of the level and an EW mean absolute deviation, scaled to a sigma (x1.2533,
exact for a normal distribution), with a floor relative to the level so a flat series does not
divide by almost nothing. Counters are scored on their per-second rate. Score first, then learn;
anomalous points are not learned unless configured. The post-rule fires a series when at least
``min_hits`` of its last ``window`` samples exceed the threshold and resolves it after
``clear_after`` consecutive samples below half the threshold; an entity fires while any of its
series does, so the on-call gets one alert per GPU, with the deviating series in the reason.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from vigil.analytics.config import ZScoreConfig
from vigil.analytics.detectors.base import detection
from vigil.analytics.slots import Frame, IntArray, SlotTable

from vigil.events import Decision, Detection

MAD_TO_SIGMA = 1.2533  # sqrt(pi/2): mean absolute deviation to standard deviation, for normal data
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)
COLUMNS = ["z_n", "z_mean", "z_mad", "z_hist", "z_below", "z_active", "z_last", "z_since"]


class ZScoreDetector:
    name = "zscore"

    def __init__(self, config: ZScoreConfig, slots: SlotTable) -> None:
        self.config = config
        self.table = slots
        self._mask = np.uint8((1 << config.window) - 1)
        for name, dtype, fill in (
            ("z_n", np.int64, 0),
            ("z_mean", np.float64, 0.0),
            ("z_mad", np.float64, 0.0),
            ("z_hist", np.uint8, 0),
            ("z_below", np.int32, 0),
            ("z_active", np.bool_, False),
            ("z_last", np.float64, 0.0),
            ("z_since", np.float64, np.nan),
        ):
            slots.add_column(name, dtype, fill)
        self.entity_active = np.zeros(0, dtype=np.int32)  # active series per entity

    def columns(self) -> list[str]:
        return list(COLUMNS)

    def rebuild(self) -> None:
        t = self.table
        active = t.col("z_active")[: t.size]
        self.entity_active = np.bincount(t.col("entity")[: t.size][active], minlength=len(t.entities)).astype(np.int32)

    # -- scoring
    def features(self, frame: Frame, lo: int, hi: int) -> npt.NDArray[np.float64]:
        slots = frame.slots[lo:hi]
        return np.where(self.table.col("counter")[slots], frame.rates[lo:hi], frame.values[lo:hi])

    def score(self, slots: IntArray, y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Robust z of ``y`` against each slot's state; 0 while warming up or for missing values."""
        c, t = self.config, self.table
        mean, mad, n = t.col("z_mean")[slots], t.col("z_mad")[slots], t.col("z_n")[slots]
        scale = np.maximum(mad * MAD_TO_SIGMA, np.maximum(c.rel_floor * np.abs(mean), c.abs_floor))
        with np.errstate(invalid="ignore"):
            z = (y - mean) / scale
        return np.where((n >= c.warmup) & np.isfinite(z), z, 0.0)

    def learn(self, slots: IntArray, y: npt.NDArray[np.float64], ok: npt.NDArray[np.bool_]) -> None:
        """EW mean and EW MAD; the first samples use a running mean so the warm-up converges fast."""
        slots, y = slots[ok], y[ok]
        t = self.table
        n = t.col("z_n")[slots]
        mean, mad = t.col("z_mean")[slots], t.col("z_mad")[slots]
        alpha = np.maximum(self.config.alpha, 1.0 / (n + 1))
        delta = y - mean
        first = n == 0
        t.col("z_mean")[slots] = np.where(first, y, mean + alpha * delta)
        t.col("z_mad")[slots] = np.where(first, 0.0, mad + alpha * (np.abs(delta) - mad))
        t.col("z_n")[slots] = n + 1

    def observe_frame(self, frame: Frame) -> list[Detection]:
        out: list[Detection] = []
        if len(self.entity_active) < len(self.table.entities):
            self.entity_active = np.pad(self.entity_active, (0, len(self.table.entities) - len(self.entity_active)))
        for lo, hi in frame.rounds:
            out.extend(self._round(frame, lo, hi))
        return out

    def _round(self, frame: Frame, lo: int, hi: int) -> list[Detection]:
        c, t = self.config, self.table
        slots = frame.slots[lo:hi]
        y = self.features(frame, lo, hi)
        valid = np.isfinite(y)
        z = self.score(slots, y)
        absz = np.abs(z)
        exceed = valid & (absz > c.threshold)
        self.learn(slots, y, valid if c.learn_on_anomaly else valid & ~exceed)
        hist = t.col("z_hist")[slots]
        hist = np.where(valid, ((hist << 1) | exceed) & self._mask, hist).astype(np.uint8)
        t.col("z_hist")[slots] = hist
        t.col("z_last")[slots] = np.where(valid, z, t.col("z_last")[slots])
        active = t.col("z_active")[slots]
        fire = valid & ~active & (POPCOUNT[hist] >= c.min_hits)
        old_below = t.col("z_below")[slots]
        calm = np.where(absz < c.threshold / 2, old_below + 1, 0)
        below = np.where(active, np.where(valid, calm, old_below), 0)
        resolve = active & (below >= c.clear_after)
        t.col("z_below")[slots] = np.where(resolve, 0, below)
        if not (fire.any() or resolve.any()):
            return []
        t.col("z_active")[slots] = (active | fire) & ~resolve
        ts = frame.ts[lo:hi]
        t.col("z_since")[slots[fire]] = ts[fire]
        return self._entity_transitions(slots[fire], slots[resolve], ts, slots)

    def _entity_transitions(
        self, fired: IntArray, resolved: IntArray, ts: npt.NDArray[np.float64], slots: IntArray
    ) -> list[Detection]:
        ent = self.table.col("entity")
        before = self.entity_active.copy()
        np.add.at(self.entity_active, ent[fired], 1)
        np.subtract.at(self.entity_active, ent[resolved], 1)
        touched = np.unique(np.concatenate([ent[fired], ent[resolved]]))
        when = dict(zip(ent[slots].tolist(), ts.tolist(), strict=False))
        out = []
        for eid in touched.tolist():
            if before[eid] == 0 and self.entity_active[eid] > 0:
                out.append(self._emit(eid, "firing", when[eid]))
            elif before[eid] > 0 and self.entity_active[eid] == 0:
                out.append(self._emit(eid, "resolved", when[eid]))
        return out

    def _emit(self, eid: int, decision: Decision, ts: float) -> Detection:
        t = self.table
        members = np.flatnonzero(t.col("entity")[: t.size] == eid)
        active = members[t.col("z_active")[members]]
        metrics = {t.series_of(s): round(float(t.col("z_last")[s]), 3) for s in active.tolist()}
        entity = t.entities[eid]
        gpu = bool(entity.gpu_index)
        what = f"{entity.host} GPU {entity.gpu_index}" if gpu else entity.host
        since = t.col("z_since")[members]
        return detection(
            self.name,
            {"alertname": "GpuTelemetryAnomaly" if gpu else "HostTelemetryAnomaly", **entity.labels()},
            decision,
            ts,
            score=max((abs(v) for v in metrics.values()), default=0.0),
            severity="warning",
            reason={
                "metrics": metrics,
                "threshold": self.config.threshold,
                "action": "inspect the GPU; drain it if the deviation persists" if gpu else "inspect the host",
            },
            since=float(np.nanmin(since)) if np.isfinite(since).any() else ts,
            summary=f"{what}: {len(metrics)} series deviate from their baseline"
            if decision == "firing"
            else f"{what}: telemetry back within its baseline",
        )
