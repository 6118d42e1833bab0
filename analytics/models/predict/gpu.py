"""GPU failure risk from the slow signals that precede hardware failures, and a lemon score per serial.

Signals (each the latest reading of a GPU, fed once a minute or so, not per sample):
correctable (SBE) ECC rate and its acceleration, remapped rows (uncorrectable ones above all),
pending remaps and remap failures, the PCIe replay rate, XID history weighted by the catalog's
severity, and the thermal margin (slowdown temperature minus temperature).

The weights are a stated prior, not a fit: no labelled GPU-failure history ships with Vigil. They
follow NVIDIA's field guidance (a row-remap failure or an uncorrectable remap means RMA; a pending
remap means reset; an accelerating correctable rate precedes uncorrectable errors) and are
combined in log-odds, so each signal's share of the risk is reported as evidence.

The lemon score is per GPU serial, so it follows the board across hosts and slots: a decayed count
of incidents (fatal XID, DBE increase, uncorrectable remap, remap failure), half-life 30 days. A
board with two recent incidents is a repeat offender whatever its current readings say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from vigil.events import Prediction

DAY = 86400.0
HORIZON_S = 7 * DAY
# Log-odds weights (a prior; see the module docstring). Base rate: ~1% of GPUs fail in a week
# in large fleets under training load (Meta's Llama 3 report: 148 GPU failures in 54 days on
# 16k GPUs is ~0.1%/week; we start higher because the score is read as "look at this GPU").
BASE_LOGIT = math.log(0.002 / 0.998)
WEIGHTS = {
    "sbe_rate": 0.8,  # per log1p(errors/day)
    "sbe_accelerating": 1.0,
    "remapped_uncorrectable": 1.5,  # per log1p(rows)
    "remap_pending": 2.0,
    "remap_failure": 6.0,
    "pcie_replay_rate": 0.5,  # per log1p(replays/hour)
    "xid": 2.0,  # per decayed severity-weighted XID count (a fatal XID counts 1)
    "thermal": 1.5,  # per unit of (10 °C - margin) / 10 °C, margin below 10 °C
    "lemon": 1.5,  # per decayed incident of this serial
}
XID_HALF_LIFE = 7 * DAY
LEMON_HALF_LIFE = 30 * DAY
LEMON_AT = 2.0
SBE_SHORT, SBE_LONG = 900.0, 6 * 3600.0  # time constants of the fast and slow SBE rate averages


def _decay(value: float, dt: float, half_life: float) -> float:
    return float(value * 0.5 ** (max(dt, 0.0) / half_life))


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU's latest values; None where the source does not report it."""

    ts: float
    host: str
    gpu_index: str
    cluster: str = "default"
    serial: str = ""
    sbe_total: float | None = None
    dbe_total: float | None = None
    remapped_uncorrectable: float | None = None
    remap_pending: float | None = None
    remap_failure: float | None = None
    pcie_replay_total: float | None = None
    temperature: float | None = None
    slowdown_temperature: float | None = None


@dataclass(slots=True)
class _GpuState:
    cluster: str = "default"
    serial: str = ""
    last_ts: float = math.nan
    sbe: float = math.nan
    sbe_fast: float = 0.0  # errors/s, exponentially averaged with SBE_SHORT
    sbe_slow: float = 0.0
    dbe: float = math.nan
    replay: float = math.nan
    replay_rate: float = 0.0
    remap_unc: float = 0.0
    pending: float = 0.0
    failure: float = 0.0
    margin: float = math.inf
    xid: float = 0.0
    xid_ts: float = 0.0
    last_reported: float = -1.0


@dataclass(slots=True)
class _Lemon:
    score: float = 0.0
    ts: float = 0.0
    incidents: int = 0


def _rate(prev: float, now: float, dt: float) -> float:
    """Per-second increase of a counter, 0 across a reset (the counter went down) or a first reading."""
    if math.isnan(prev) or dt <= 0 or now < prev:
        return 0.0
    return (now - prev) / dt


@dataclass
class GpuRisk:
    """Per-GPU state keyed by ``host/gpu_index``; lemon state keyed by serial."""

    report_min: float = 0.05  # probabilities below this are not published
    report_change: float = 0.05  # a published probability is republished when it moves this much
    gpus: dict[str, _GpuState] = field(default_factory=dict)
    lemons: dict[str, _Lemon] = field(default_factory=dict)

    @staticmethod
    def key(host: str, gpu_index: str) -> str:
        return f"{host}/{gpu_index}"

    def observe(self, r: GpuReading) -> None:
        s = self.gpus.setdefault(self.key(r.host, r.gpu_index), _GpuState())
        s.serial = r.serial or s.serial
        s.cluster = r.cluster
        dt = r.ts - s.last_ts if not math.isnan(s.last_ts) else 0.0
        if r.sbe_total is not None:
            rate = _rate(s.sbe, r.sbe_total, dt)
            if dt > 0:
                s.sbe_fast += (1 - math.exp(-dt / SBE_SHORT)) * (rate - s.sbe_fast)
                s.sbe_slow += (1 - math.exp(-dt / SBE_LONG)) * (rate - s.sbe_slow)
            s.sbe = r.sbe_total
        if r.dbe_total is not None:
            if not math.isnan(s.dbe) and r.dbe_total > s.dbe:
                self.incident(r.ts, s.serial, "dbe")
            s.dbe = r.dbe_total
        if r.pcie_replay_total is not None:
            rate = _rate(s.replay, r.pcie_replay_total, dt)
            if dt > 0:
                s.replay_rate += (1 - math.exp(-dt / SBE_LONG)) * (rate - s.replay_rate)
            s.replay = r.pcie_replay_total
        if r.remapped_uncorrectable is not None:
            if r.remapped_uncorrectable > s.remap_unc:
                self.incident(r.ts, s.serial, "remap_uncorrectable")
            s.remap_unc = r.remapped_uncorrectable
        if r.remap_pending is not None:
            s.pending = r.remap_pending
        if r.remap_failure is not None:
            if r.remap_failure > 0 and s.failure == 0:
                self.incident(r.ts, s.serial, "remap_failure")
            s.failure = r.remap_failure
        if r.temperature is not None and r.slowdown_temperature is not None and r.slowdown_temperature > 0:
            s.margin = r.slowdown_temperature - r.temperature
        s.last_ts = r.ts

    def observe_xid(self, ts: float, host: str, gpu_index: str, severity: str, fatal: bool) -> None:
        s = self.gpus.setdefault(self.key(host, gpu_index), _GpuState())
        s.xid = _decay(s.xid, ts - s.xid_ts, XID_HALF_LIFE) + (1.0 if fatal else 0.3 if severity == "critical" else 0.1)
        s.xid_ts = ts
        if fatal:
            self.incident(ts, s.serial, "xid")

    def incident(self, ts: float, serial: str, kind: str) -> None:
        if not serial:
            return  # a lemon is a board; without its serial there is nothing to follow
        lemon = self.lemons.setdefault(serial, _Lemon())
        lemon.score = _decay(lemon.score, ts - lemon.ts, LEMON_HALF_LIFE) + 1.0
        lemon.ts = ts
        lemon.incidents += 1

    # -- state, for the analytics snapshot of the partition that owns these hosts
    def export(self, hosts: set[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The GPUs of ``hosts`` as plain dicts, and their serials (whose lemon state goes along)."""
        out = {k: asdict(s) for k, s in self.gpus.items() if k.partition("/")[0] in hosts}
        return out, {s["serial"] for s in out.values() if s["serial"]}

    def export_lemon(self, serial: str) -> list[float]:
        lemon = self.lemons[serial] if serial in self.lemons else _Lemon()
        return [lemon.score, lemon.ts, float(lemon.incidents)]

    def load(self, gpus: Mapping[str, Mapping[str, Any]], lemons: Mapping[str, Any]) -> None:
        known = set(_GpuState.__dataclass_fields__)
        for key, fields in gpus.items():
            self.gpus[key] = _GpuState(**{k: v for k, v in fields.items() if k in known})
        for serial, (score, ts, incidents) in lemons.items():
            mine = self.lemons.get(serial)
            if mine is None or mine.ts < ts:  # a board seen on two partitions: the newer record wins
                self.lemons[serial] = _Lemon(float(score), float(ts), int(incidents))

    def lemon_score(self, serial: str, now: float) -> float:
        lemon = self.lemons.get(serial)
        return _decay(lemon.score, now - lemon.ts, LEMON_HALF_LIFE) if lemon else 0.0

    def terms(self, key: str, now: float) -> dict[str, float]:
        """Each signal's contribution in log-odds (0 when absent)."""
        s = self.gpus[key]
        per_day = s.sbe_slow * DAY
        accelerating = s.sbe_fast > 3 * s.sbe_slow and s.sbe_fast * DAY > 1.0
        margin_short = max(0.0, 10.0 - s.margin) / 10.0 if math.isfinite(s.margin) else 0.0
        values = {
            "sbe_rate": math.log1p(per_day),
            "sbe_accelerating": 1.0 if accelerating else 0.0,
            "remapped_uncorrectable": math.log1p(s.remap_unc),
            "remap_pending": 1.0 if s.pending > 0 else 0.0,
            "remap_failure": 1.0 if s.failure > 0 else 0.0,
            "pcie_replay_rate": math.log1p(s.replay_rate * 3600.0),
            "xid": _decay(s.xid, now - s.xid_ts, XID_HALF_LIFE),
            "thermal": margin_short,
            "lemon": self.lemon_score(s.serial, now),
        }
        return {k: WEIGHTS[k] * v for k, v in values.items() if v}

    def probability(self, key: str, now: float) -> float:
        logit = BASE_LOGIT + sum(self.terms(key, now).values())
        return 1.0 / (1.0 + math.exp(-logit))

    def predict(self, now: float) -> list[Prediction]:
        """Predictions for GPUs whose risk is worth a look and moved since it was last published."""
        out: list[Prediction] = []
        for key, s in self.gpus.items():
            p = self.probability(key, now)
            moved = abs(p - s.last_reported) >= self.report_change
            newly_low = p < self.report_min <= s.last_reported
            if not (moved and p >= self.report_min) and not newly_low:
                continue
            s.last_reported = p
            host, _, gpu_index = key.partition("/")
            out.append(self._prediction(now, host, gpu_index, s, p))
        return out

    def _prediction(self, now: float, host: str, gpu: str, s: _GpuState, p: float) -> Prediction:
        terms = self.terms(self.key(host, gpu), now)
        evidence: dict[str, Any] = {k: round(v, 3) for k, v in sorted(terms.items(), key=lambda kv: -kv[1])}
        lemon = self.lemon_score(s.serial, now)
        evidence["lemon_score"] = round(lemon, 3)
        evidence["repeat_offender"] = lemon >= LEMON_AT
        labels: Mapping[str, str] = {"cluster": s.cluster, "host": host, "gpu_index": gpu, "gpu_serial": s.serial}
        return Prediction(
            ts=now,
            predictor="gpu_risk",
            entity=f"gpu:{host}/{gpu}",
            kind="gpu",
            probability=round(p, 4),
            horizon_s=HORIZON_S,
            labels=labels,
            evidence=evidence,
        )
