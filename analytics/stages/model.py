"""The ``model`` stage: any registered model, live, per host or per GPU over a group of metrics.

``{stage: model, name: host_mspc, model: adaptive_mspc, per: host, metrics: [...], options: {...}}``
gives every host (or GPU) its own instance of the model. A unit's features are its series of those
metrics (counters as per-second rates), named by series key, so a restart maps them back whatever
slots they get; a poll's samples become one row per timestamp and unit (NaN where a series did not
report), and the rows go through ``process_many``: scored with what was learnt before them, then
learnt.

Off the consumer's thread: with ``background`` (the default) the rows of a poll wait as *pending*
blocks and one job at a time scores every unit's pending rows in a worker thread, so a refit (an
IsolationForest regrown, an autoencoder trained) never stalls a poll; the job's scores are decided
on the consumer's thread when it is done. Only one job is in flight, and the consumer touches no
unit while it is: ``settle`` (before a snapshot) waits for that job alone, and the rows still
pending go into the snapshot as they are, to be scored after a restart. So a restored stage scores
exactly the rows the first one would have, with the same state.

Decisions: the stage's scores go through the library's decision layer (:class:`DecideBank`, one
entry per unit: calibration, threshold, min-hits, hysteresis, cool-down), and each unit fires as
one alert about its host or GPU (``alertname``), naming the feature the model blames most
(``explain_many``, computed after the block is learnt) in the reason. A unit's rows before its
model's first non-zero score (the API's "knows nothing yet") teach the calibration nothing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vigil.analytics.config import StageConfig
from vigil.analytics.models import registry
from vigil.analytics.models.base import Detector, FloatArray, SnapshotMismatch
from vigil.analytics.models.columns import ArrayStore
from vigil.analytics.models.decide import DecideBank
from vigil.analytics.models.ring import pack, unpack
from vigil.analytics.stages.base import detection
from vigil.analytics.stages.slots import Frame, IntArray, SlotTable

from vigil.events import Decision, Detection

log = logging.getLogger(__name__)
UNSEEN, EXCLUDED = -1, -2  # a slot's unit before first sight, and a series the stage does not model
MAX_PENDING_ROWS = 4096  # rows waiting per unit before the consumer waits for the worker (backpressure)
SNAPSHOT_VERSION = 1


@dataclass(slots=True, eq=False)
class Unit:
    """One host or GPU: its model, its features (series keys, in column order) and rows not yet scored."""

    uid: int
    cluster: str
    host: str
    gpu: str
    partition: int
    model: Detector
    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[FloatArray, FloatArray]] = field(default_factory=list)  # (ts, rows) blocks

    def feature(self, name: str, limit: int) -> int:
        """The column of series ``name``, added if new; EXCLUDED past ``limit`` features."""
        found = self.index.get(name)
        if found is None:
            if len(self.names) >= limit:
                return EXCLUDED
            found = self.index[name] = len(self.names)
            self.names.append(name)
        return found

    def take(self) -> tuple[FloatArray, FloatArray]:
        """The pending rows as one block (older blocks padded to today's width), and none left pending."""
        width = len(self.names)
        ts = self.pending[0][0] if len(self.pending) == 1 else np.concatenate([t for t, _ in self.pending])
        padded = [
            X if X.shape[1] == width else np.pad(X, ((0, 0), (0, width - X.shape[1])), constant_values=np.nan)
            for _, X in self.pending
        ]
        rows = padded[0] if len(padded) == 1 else np.vstack(padded)
        self.pending = []
        return ts, rows

    @property
    def pending_rows(self) -> int:
        return sum(len(t) for t, _ in self.pending)


@dataclass(frozen=True, slots=True)
class Scored:
    """A unit's rows once scored: their times, raw scores and the feature blamed most (-1: none)."""

    uid: int
    ts: FloatArray
    scores: FloatArray
    top: IntArray


def score(jobs: list[tuple[Unit, FloatArray, FloatArray]]) -> list[Scored]:
    """The work of one job (in the worker thread, which owns these units' models meanwhile)."""
    out = []
    for unit, ts, X in jobs:
        model = unit.model
        have = len(model.features)
        if X.shape[1] > have:  # series first seen since the last job: the model learns their names
            model.row({name: np.nan for name in unit.names[have : X.shape[1]]})
        scores = np.nan_to_num(model.process_many(X), nan=0.0, posinf=0.0, neginf=0.0)
        blame = np.abs(model.explain_many(X))
        known = np.isfinite(blame).any(axis=1)
        top = np.where(known, np.argmax(np.nan_to_num(blame, nan=-1.0), axis=1), -1).astype(np.intp)
        out.append(Scored(unit.uid, ts, scores, top))
    return out


class ModelStage:
    def __init__(self, spec: StageConfig, slots: SlotTable) -> None:
        if spec.model is None or spec.name is None:
            raise ValueError("a model stage needs a model and a name")
        self.spec, self.table, self.name = spec, slots, spec.name
        self.model_name: str = spec.model
        self.store = ArrayStore()
        self.decide = DecideBank(spec.decision(), self.store)
        self.store.add_column("raw", np.float64, np.nan)  # the last raw score, for the reason
        self.store.add_column("warm", np.bool_, False)  # the model has scored something non-zero
        self._unit_col, self._feat_col = f"{self.name}__unit", f"{self.name}__feature"
        slots.add_column(self._unit_col, np.int32, UNSEEN)  # not snapshotted: rebuilt from series keys
        slots.add_column(self._feat_col, np.int32, UNSEEN)
        self._metric_ids = np.array([slots.metric_id(m) for m in spec.metrics], dtype=np.intp)
        self.units: list[Unit | None] = []
        self._by_key: dict[tuple[str, str, str], int] = {}
        self._free: list[int] = []
        self._pool: ThreadPoolExecutor | None = None
        self._job: Future[list[Scored]] | None = None
        self._done: list[Scored] = []  # scored, not decided yet
        self.failed_jobs = 0

    # -- the TelemetryStage interface
    def columns(self) -> list[str]:
        return []

    def rebuild(self) -> None:
        return  # slot -> unit is rebuilt lazily from series keys

    def observe_frame(self, frame: Frame) -> list[Detection]:
        self._gather(frame)
        return self.pump()

    def pump(self) -> list[Detection]:
        if not self.spec.background:
            self._done += score(self._take_pending())
            return self._decide()
        if self._job is not None and (self._job.done() or self._backlog() > MAX_PENDING_ROWS):
            self._collect()  # waits only under backpressure
        if self._job is None:
            jobs = self._take_pending()
            if jobs:
                self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix=f"vigil-{self.name}")
                self._job = self._pool.submit(score, jobs)
        return self._decide()

    def settle(self) -> list[Detection]:
        """Wait for the job in flight (not for pending rows: they are snapshotted as they are)."""
        self._wait()
        return self._decide()

    def close(self) -> None:
        self._wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- rows from a frame
    def _gather(self, frame: Frame) -> None:
        t = self.table
        sel = np.flatnonzero(np.isin(t.col("metric")[frame.slots], self._metric_ids))
        if not sel.size:
            return
        slots = frame.slots[sel]
        units = t.col(self._unit_col)[slots]
        if (units == UNSEEN).any():
            self._assign(np.unique(slots[units == UNSEEN]))
            units = t.col(self._unit_col)[slots]
        keep = units >= 0
        sel, slots, units = sel[keep], slots[keep], units[keep]
        values = np.where(t.col("counter")[slots], frame.rates[sel], frame.values[sel])
        ts, feats = frame.ts[sel], t.col(self._feat_col)[slots]
        order = np.lexsort((ts, units))
        units, ts, feats, values = units[order], ts[order], feats[order], values[order]
        cuts = np.flatnonzero(np.diff(units)) + 1
        for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), units.size], strict=True):
            unit = self.units[int(units[lo])]
            if unit is None:
                continue
            stamps, row = np.unique(ts[lo:hi], return_inverse=True)
            X = np.full((stamps.size, len(unit.names)), np.nan)
            X[row, feats[lo:hi]] = values[lo:hi]
            unit.pending.append((stamps, X))

    def _assign(self, slots: IntArray) -> None:
        """First sight of these slots: their unit (made if new) and their column in its model."""
        t, per_gpu, limit = self.table, self.spec.per == "gpu", self.spec.max_features
        for slot in slots.tolist():
            entity = t.entities[int(t.col("entity")[slot])]
            if per_gpu and not entity.gpu_index:
                t.col(self._unit_col)[slot] = EXCLUDED
                continue
            key = (entity.cluster, entity.host, entity.gpu_index if per_gpu else "")
            unit = self._unit(key, int(t.col("partition")[slot]))
            column = unit.feature(t.series_of(slot), limit)
            t.col(self._unit_col)[slot] = unit.uid if column >= 0 else EXCLUDED
            t.col(self._feat_col)[slot] = column

    def _unit(self, key: tuple[str, str, str], partition: int, model: Detector | None = None) -> Unit:
        uid = self._by_key.get(key)
        if uid is not None:
            found = self.units[uid]
            if found is not None:
                return found
        if model is None:
            model = registry.create(self.model_name, self.spec.options, (), key=f"analytics.stages.{self.name}")
        uid = self._free.pop() if self._free else len(self.units)
        if uid == len(self.units):
            self.units.append(None)
            self.store.ensure(max(2 * len(self.units), 16))
        unit = Unit(uid, *key, partition=partition, model=model)
        self.units[uid] = unit
        self._by_key[key] = uid
        return unit

    def _take_pending(self) -> list[tuple[Unit, FloatArray, FloatArray]]:
        return [(u, *u.take()) for u in self.units if u is not None and u.pending]

    def _backlog(self) -> int:
        return max((u.pending_rows for u in self.units if u is not None), default=0)

    def _wait(self) -> None:
        if self._job is not None:
            self._collect()

    def _collect(self) -> None:
        """The job's scores (waiting for them). A job that raised (a model's bug) loses its rows, logged
        and counted: it must not fail every later poll, which has nothing to do with those records."""
        job, self._job = self._job, None
        if job is None:
            return
        try:
            self._done += job.result()
        except Exception as exc:
            self.failed_jobs += 1
            log.exception("stage %s: a scoring job failed (%s); its rows are lost", self.name, exc)

    # -- decisions
    def _decide(self) -> list[Detection]:
        """The scored rows of every unit, round by round (a unit's k-th row in round k), through the
        decision layer; entity transitions become detections."""
        done = [s for s in self._done if s.ts.size and self.units[s.uid] is not None]
        self._done = []
        if not done:
            return []
        uids = np.concatenate([np.full(s.ts.size, s.uid, dtype=np.intp) for s in done])
        ts, raw = np.concatenate([s.ts for s in done]), np.concatenate([s.scores for s in done])
        top = np.concatenate([s.top for s in done])
        by_unit = np.argsort(uids, kind="stable")
        starts = np.ones(uids.size, dtype=bool)
        starts[1:] = uids[by_unit][1:] != uids[by_unit][:-1]
        rank = np.empty(uids.size, dtype=np.intp)
        rank[by_unit] = np.arange(uids.size) - np.maximum.accumulate(np.where(starts, np.arange(uids.size), 0))
        order = np.argsort(rank, kind="stable")
        edges = np.concatenate(([0], np.cumsum(np.bincount(rank)))).tolist()
        out: list[Detection] = []
        for lo, hi in itertools.pairwise(edges):
            pick = order[lo:hi]
            out += self._round(uids[pick], ts[pick], raw[pick], top[pick])
        return out

    def _round(self, uids: IntArray, ts: FloatArray, raw: FloatArray, top: IntArray) -> list[Detection]:
        warm = self.store.col("warm")
        warm[uids] |= raw != 0.0
        valid = warm[uids] & np.isfinite(raw)
        self.store.col("raw")[uids] = np.where(valid, raw, self.store.col("raw")[uids])
        fire, resolve = self.decide.update(uids, raw, ts, valid)
        out = []
        for i in np.flatnonzero(fire | resolve).tolist():
            decision: Decision = "firing" if fire[i] else "resolved"
            out.append(self._emit(int(uids[i]), decision, float(ts[i]), int(top[i])))
        return out

    def _emit(self, uid: int, decision: Decision, ts: float, top: int) -> Detection:
        unit = self.units[uid]
        if unit is None:
            raise RuntimeError(f"unit {uid} is gone")
        feature = unit.names[top] if 0 <= top < len(unit.names) else None
        raw = float(self.store.col("raw")[uid])
        reason = self.decide.reason(uid, self.model_name, raw, feature)
        labels = {"alertname": self.spec.alert(), "cluster": unit.cluster, "host": unit.host}
        if unit.gpu:
            labels["gpu_index"] = unit.gpu
        what = f"{unit.host} GPU {unit.gpu}" if unit.gpu else unit.host
        reason.update(stage=self.name, per=self.spec.per, features=len(unit.names), action=f"inspect {what}: {feature}")
        since = float(self.decide.col("since")[uid])
        return detection(
            self.name,
            labels,
            decision,
            ts,
            score=abs(float(self.decide.col("last")[uid])),
            severity=self.spec.severity,
            reason=reason,
            since=since if decision == "firing" and np.isfinite(since) else ts,
            summary=f"{what}: {self.model_name} over {len(unit.names)} series scores {raw:.3g} (most: {feature})"
            if decision == "firing"
            else f"{what}: {self.model_name} score back to normal",
        )

    # -- state per partition
    def snapshot(self, partition: int) -> dict[str, Any]:
        self._wait()  # the models must be idle; what the job decided waits in _done for the next pump
        units = []
        for unit in self.units:
            if unit is None or unit.partition != partition:
                continue
            ts, rows = unit.take() if unit.pending else (np.zeros(0), np.zeros((0, len(unit.names))))
            if ts.size:
                unit.pending = [(ts, rows)]
            decide = {c: self.store.col(c)[unit.uid].item() for c in self._state_columns()}
            units.append(
                {
                    "key": [unit.cluster, unit.host, unit.gpu],
                    "names": list(unit.names),
                    "model": unit.model.snapshot(),
                    "decide": decide,
                    "pending_ts": pack(ts),
                    "pending": pack(rows),
                }
            )
        return {"version": SNAPSHOT_VERSION, "model": self.model_name, "units": units}

    def _state_columns(self) -> list[str]:
        return [*self.decide.columns(), "raw", "warm"]

    def restore(self, partition: int, blob: Mapping[str, Any]) -> None:
        if blob.get("version") != SNAPSHOT_VERSION or blob.get("model") != self.model_name:
            found = f"{blob.get('model')} v{blob.get('version')}"
            log.warning("stage %s: a snapshot of %s is not ours: cold start", self.name, found)
            return
        self._wait()
        for raw in blob.get("units", []):
            model = registry.create(self.model_name, self.spec.options, (), key=f"analytics.stages.{self.name}")
            try:
                model.restore(raw["model"])
            except (SnapshotMismatch, ValueError, KeyError) as exc:
                log.warning("stage %s: a unit's model snapshot does not load (%s): cold start", self.name, exc)
                continue
            cluster, host, gpu = (str(k) for k in raw["key"])
            unit = self._unit((cluster, host, gpu), partition, model)
            for name in raw["names"]:
                unit.feature(str(name), max(self.spec.max_features, len(raw["names"])))
            for column, value in raw["decide"].items():
                if self.store.has(column):
                    self.store.col(column)[unit.uid] = value
            ts, rows = unpack(raw["pending_ts"]), unpack(raw["pending"])
            if ts.size:
                unit.pending = [(ts, rows.reshape(ts.size, -1))]

    def drop(self, partition: int) -> None:
        self._wait()
        gone = {u.uid for u in self.units if u is not None and u.partition == partition}
        if not gone:
            return
        self._done = [s for s in self._done if s.uid not in gone]
        for uid in sorted(gone):
            unit = self.units[uid]
            if unit is not None:
                del self._by_key[(unit.cluster, unit.host, unit.gpu)]
            self.units[uid] = None
            self._free.append(uid)
        self.store.reset(np.array(sorted(gone), dtype=np.intp))
        unit_col = self.table.col(self._unit_col)
        stale = np.isin(unit_col, list(gone))  # slots of these units are released with the partition
        unit_col[stale] = UNSEEN
        self.table.col(self._feat_col)[stale] = UNSEEN
