"""The predictors inside the analytics consumer: read the newest value of every relevant series from
the slot table once per ``every`` seconds of event time and publish ``Prediction`` events.

The telemetry path already keeps each series' last value (``last_value``/``last_ts`` slot columns),
so predicting costs one masked pass over the slot table per interval, never work per sample.
Forecasts keep a short per-series history (one point per interval) only for the series they
forecast, and fit Holt's model only when a least-squares slope says the threshold is within reach.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from vigil.analytics.models.predict.disk import ATTRIBUTES, COUNTERS, FEATURES, GbmModel, RulePrior
from vigil.analytics.models.predict.forecast import time_to_threshold
from vigil.analytics.models.predict.gpu import GpuReading, GpuRisk
from vigil.analytics.stages.slots import SlotTable

from vigil import catalog as c
from vigil.events import LogEvent, Prediction, parse_series_key
from vigil.xid import XidCatalog

DAY = 86400.0
DEFAULT_SLOWDOWN_C = 87.0  # when the GPU does not report its own slowdown temperature

_GPU_FIELDS = {
    c.GPU_ECC_SBE_AGGREGATE: "sbe_total",
    c.GPU_ECC_DBE_AGGREGATE: "dbe_total",
    c.GPU_REMAP_PENDING: "remap_pending",
    c.GPU_REMAP_FAILURE: "remap_failure",
    c.GPU_PCIE_REPLAY: "pcie_replay_total",
    c.GPU_TEMPERATURE: "temperature",
    c.GPU_SLOWDOWN_TEMPERATURE: "slowdown_temperature",
}
# Volatile counters are what the simulator and a freshly booted GPU report; aggregate ones win.
_GPU_FALLBACK = {c.GPU_ECC_SBE: "sbe_total", c.GPU_ECC_DBE: "dbe_total"}
_WATCHED = {
    *_GPU_FIELDS,
    *_GPU_FALLBACK,
    c.GPU_REMAPPED_ROWS,
    c.GPU_INFO,
    c.DISK_SMART_ATTRIBUTE,
    c.HOST_FS_FREE,
    c.HOST_FS_SIZE,
}


@dataclass(slots=True)
class _Forecasted:
    history: deque[tuple[float, float]]
    last_seconds: float = math.inf


@dataclass
class PredictorStage:
    slots: SlotTable
    every: float = 60.0
    catalog: XidCatalog | None = None
    disk_model: Path | None = None
    disk_horizon_days: int = 30
    full_within: float = DAY  # publish a disk-full forecast when it is closer than this
    thermal_within: float = 3600.0
    history_points: int = 360
    gpu: GpuRisk = field(default_factory=GpuRisk)
    _next: float = -math.inf
    _forecasts: dict[tuple[str, str, str], _Forecasted] = field(default_factory=dict)
    _disk_days: dict[tuple[str, str], deque[tuple[float, dict[int, float]]]] = field(default_factory=dict)
    _disk_reported: dict[tuple[str, str], float] = field(default_factory=dict)
    _parsed: dict[int, tuple[tuple[str, str, str], str, dict[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._gbm = GbmModel.load(self.disk_model) if self.disk_model is not None else None
        self._prior = RulePrior(horizon_days=self.disk_horizon_days)

    # -- state (in the telemetry partition's snapshot: GPU signals, lemon scores and SMART days
    # have days of memory; forecast histories rebuild within minutes and are not kept)
    def snapshot(self, hosts: set[str]) -> dict[str, Any]:
        gpus, serials = self.gpu.export(hosts)
        return {
            "version": 1,
            "gpus": gpus,
            "lemons": {s: self.gpu.export_lemon(s) for s in serials},
            "disks": [
                [
                    host,
                    device,
                    [[ts, {str(a): v for a, v in attrs.items()}] for ts, attrs in days],
                    self._disk_reported.get((host, device)),
                ]
                for (host, device), days in self._disk_days.items()
                if host in hosts
            ],
        }

    def restore(self, blob: Mapping[str, Any]) -> None:
        if blob.get("version") != 1:
            return  # another layout: start cold rather than misread it
        self.gpu.load(blob.get("gpus", {}), blob.get("lemons", {}))
        for host, device, days, reported in blob.get("disks", []):
            self._disk_days[(host, device)] = deque(
                ((float(ts), {int(a): float(v) for a, v in attrs.items()}) for ts, attrs in days), maxlen=8
            )
            if reported is not None:
                self._disk_reported[(host, device)] = float(reported)

    # -- inputs
    def observe_log(self, event: LogEvent) -> None:
        if event.kind != "xid" or event.code is None or event.gpu_index is None:
            return
        entry = (self.catalog or XidCatalog.load()).get(event.code)
        severity, fatal = (entry.severity, entry.fatal) if entry is not None else ("warning", False)
        self.gpu.observe_xid(event.ts, event.host, str(event.gpu_index), severity, fatal)

    def _series(self) -> Iterator[tuple[str, str, str, dict[str, str], float, float]]:
        """(cluster, host, metric, labels, value, ts) of every watched series with a value."""
        size = self.slots.size
        ids = [self.slots.metrics[m] for m in _WATCHED if m in self.slots.metrics]
        metric_col = self.slots.col("metric")[:size]
        values, stamps = self.slots.col("last_value"), self.slots.col("last_ts")
        for slot in np.flatnonzero(np.isin(metric_col, ids)).tolist():
            key = self.slots.keys[slot]
            if key is None or not math.isfinite(values[slot]):
                continue
            cached = self._parsed.get(slot)
            if cached is None or cached[0] != key:  # a slot is reused after its partition is released
                cached = self._parsed[slot] = (key, *parse_series_key(key[2]))
            _, metric, labels = cached
            yield key[0], key[1], metric, labels, float(values[slot]), float(stamps[slot])

    # -- the interval
    def run(self, now: float) -> list[Prediction]:
        if now < self._next:
            return []
        self._next = now + self.every
        gpus: dict[tuple[str, str, str], dict[str, Any]] = {}
        disks: dict[tuple[str, str, str], dict[int, float]] = {}
        fs: dict[tuple[str, str, str], dict[str, float]] = {}
        out: list[Prediction] = []
        for cluster, host, metric, labels, value, ts in self._series():
            gpu = labels.get("gpu_index", labels.get("gpu", ""))
            if metric == c.GPU_INFO:
                gpus.setdefault((cluster, host, gpu), {})["serial"] = labels.get("serial", "")
            elif metric in _GPU_FIELDS:
                gpus.setdefault((cluster, host, gpu), {})[_GPU_FIELDS[metric]] = value
            elif metric in _GPU_FALLBACK:
                gpus.setdefault((cluster, host, gpu), {}).setdefault(_GPU_FALLBACK[metric], value)
            elif metric == c.GPU_REMAPPED_ROWS and labels.get("cause") == "uncorrectable":
                gpus.setdefault((cluster, host, gpu), {})["remapped_uncorrectable"] = value
            elif metric == c.DISK_SMART_ATTRIBUTE and labels.get("attr_id", "").isdigit():
                disks.setdefault((cluster, host, labels.get("device", "")), {})[int(labels["attr_id"])] = value
            elif metric in (c.HOST_FS_FREE, c.HOST_FS_SIZE):
                fs.setdefault((cluster, host, labels.get("mountpoint", "")), {})[metric] = value
            if metric in (c.GPU_TEMPERATURE, c.HOST_FS_FREE):
                self._remember((host, metric, gpu or labels.get("mountpoint", "")), ts, value)
        for (cluster, host, gpu), fields in gpus.items():
            self.gpu.observe(GpuReading(ts=now, host=host, gpu_index=gpu, cluster=cluster, **fields))
        out.extend(self.gpu.predict(now))
        out.extend(self._thermal(now, gpus))
        out.extend(self._disk_full(now, fs))
        out.extend(self._disks(now, disks))
        return out

    def _remember(self, key: tuple[str, str, str], ts: float, value: float) -> None:
        entry = self._forecasts.get(key)
        if entry is None:
            entry = self._forecasts[key] = _Forecasted(deque(maxlen=self.history_points))
        if not entry.history or ts > entry.history[-1][0]:
            entry.history.append((ts, value))

    def _reach(self, key: tuple[str, str, str], threshold: float, direction: str, within: float) -> float | None:
        """Seconds until the series reaches ``threshold``; None when not worth saying (or unchanged)."""
        entry = self._forecasts.get(key)
        if entry is None or len(entry.history) < 10:
            return None
        ts, ys = np.array(entry.history).T
        slope = float(np.polyfit(ts - ts[-1], ys, 1)[0])  # cheap screen before the Holt fit
        gap = threshold - ys[-1]
        plausible = slope != 0 and gap / slope >= 0 and gap / slope <= 2 * within
        seconds = math.inf
        if plausible or (gap <= 0 if direction == "up" else gap >= 0):
            fc = time_to_threshold(
                ts,
                ys,
                threshold,
                direction="up" if direction == "up" else "down",
                step=max(self.every, 1.0),
                max_horizon=within,
            )
            seconds = fc.seconds if fc is not None else math.inf
        before, entry.last_seconds = entry.last_seconds, seconds
        if math.isinf(seconds) and math.isinf(before):
            return None
        if math.isfinite(seconds) and math.isfinite(before) and abs(seconds - before) < 0.25 * max(before, 60.0):
            return None
        return seconds

    def _thermal(self, now: float, gpus: dict[tuple[str, str, str], dict[str, Any]]) -> list[Prediction]:
        out = []
        for (cluster, host, gpu), fields in gpus.items():
            limit = fields.get("slowdown_temperature") or DEFAULT_SLOWDOWN_C
            seconds = self._reach((host, c.GPU_TEMPERATURE, gpu), limit, "up", self.thermal_within)
            if seconds is not None:
                out.append(
                    _forecast(
                        "time_to_thermal_limit",
                        "gpu",
                        f"gpu:{host}/{gpu}",
                        now,
                        seconds,
                        {"cluster": cluster, "host": host, "gpu_index": gpu},
                        {"limit_celsius": limit, "temperature_celsius": fields.get("temperature")},
                    )
                )
        return out

    def _disk_full(self, now: float, fs: dict[tuple[str, str, str], dict[str, float]]) -> list[Prediction]:
        out = []
        for (cluster, host, mount), fields in fs.items():
            seconds = self._reach((host, c.HOST_FS_FREE, mount), 0.0, "down", self.full_within)
            if seconds is not None:
                out.append(
                    _forecast(
                        "time_to_disk_full",
                        "filesystem",
                        f"fs:{host}:{mount}",
                        now,
                        seconds,
                        {"cluster": cluster, "host": host, "mountpoint": mount},
                        {"free_bytes": fields.get(c.HOST_FS_FREE), "size_bytes": fields.get(c.HOST_FS_SIZE)},
                    )
                )
        return out

    def _disks(self, now: float, disks: dict[tuple[str, str, str], dict[int, float]]) -> list[Prediction]:
        out = []
        for (cluster, host, device), attrs in disks.items():
            days = self._disk_days.setdefault((host, device), deque(maxlen=8))
            if not days or now - days[-1][0] >= DAY:
                days.append((now, dict(attrs)))
            row: dict[str, float] = {f"smart_{a}_raw": attrs.get(a, math.nan) for a in ATTRIBUTES}
            oldest = days[0][1]
            for a in COUNTERS:
                row[f"smart_{a}_delta"] = (
                    max(0.0, attrs.get(a, math.nan) - oldest.get(a, math.nan)) if a in attrs and a in oldest else 0.0
                )
            frame = pd.DataFrame([row], columns=list(FEATURES))
            model = self._gbm if self._gbm is not None else self._prior
            p = float(model.predict_proba(frame)[0])
            if not self._disk_news(p, self._disk_reported.get((host, device))):
                continue
            self._disk_reported[(host, device)] = p
            evidence = {k: v for k, v in row.items() if math.isfinite(v) and v > 0}
            out.append(
                Prediction(
                    ts=now,
                    predictor="disk_gbm" if self._gbm is not None else "disk_rule_prior",
                    entity=f"disk:{host}:{device}",
                    kind="disk",
                    probability=round(p, 4),
                    horizon_s=self.disk_horizon_days * DAY,
                    labels={"cluster": cluster, "host": host, "device": device},
                    evidence=evidence,
                )
            )
        return out

    def _disk_news(self, p: float, last: float | None) -> bool:
        """Publish a disk when its evidence first lifts it above a clean disk, when its probability
        moves by half again either way, and once when it falls back to clean."""
        clean = self._prior.clean_probability() * 1.01 if self._gbm is None else 0.0
        if last is None:
            return p > clean
        if p <= clean:
            return last > clean
        return p >= 1.5 * last or p <= last / 1.5


def _forecast(
    predictor: str, kind: str, entity: str, now: float, seconds: float, labels: dict[str, str], evidence: dict[str, Any]
) -> Prediction:
    """A forecast as a Prediction: probability 1 when the trend reaches the threshold within the
    horizon (a point forecast, not a probability), 0 when a published forecast no longer holds."""
    reached = math.isfinite(seconds)
    return Prediction(
        ts=now,
        predictor=predictor,
        entity=entity,
        kind=kind,
        probability=1.0 if reached else 0.0,
        horizon_s=round(seconds, 1) if reached else 0.0,
        labels=labels,
        evidence={k: v for k, v in evidence.items() if v is not None},
    )
