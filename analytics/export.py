"""What analytics knows about the fleet, as Prometheus metrics for dashboards (bounded cardinality).

- The last value of each telemetry metric of ``vigil.catalog.METRICS`` per GPU and host
  (``vigil_gpu_temperature_celsius{cluster,host,gpu_index}``, ``vigil_host_load1{cluster,host}``...),
  read from the slot table's ``last_value``/``last_ts`` columns, plus each host's newest sample time
  (``vigil_telemetry_last_timestamp_seconds``). One series per GPU or host and metric: several
  source series of one (dcgm-exporter labelled by pod, a MIG slice) show the newest of them. A
  host forgotten (its partition went to another replica, or silent for ``forget_after`` of event
  time) has its series removed.
- Per entity (detector, alert name and the identity labels present): 1/0 while a detection fires /
  after it resolved, and the score of its latest detection. Resolved entries go after ``forget_after``.
- Per training job and rank: the last step, step time, compute time, loss and throughput reported;
  per job whether it is judged hung (``TrainingHang`` firing). A job silent for ``job_forget_after``
  is removed.

Nothing here runs per sample: the telemetry view is rebuilt from the slot columns (a few vector
operations) at most every ``REFRESH_S`` by the service thread, training state is one dict entry per
rank, and label strings are built only when Prometheus scrapes (``collect``, on the HTTP thread,
from an immutable view taken under a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from vigil.analytics.slots import Entity, SlotTable

from vigil.catalog import TRAINING_COMPUTE_SECONDS, TRAINING_LOSS, TRAINING_STEP_SECONDS, TRAINING_TOKENS_PER_SECOND
from vigil.events import Detection, TrainingStep
from vigil.metrics_catalog import RANK, Family, counter_family, gauge_family, telemetry_families

REFRESH_S = 2.0
HANG = "TrainingHang"
EntityKey = tuple[str, str, str, str, str, str, str]  # the labels of metrics_catalog.ENTITY, in order
RankKey = tuple[str, str, str]  # cluster, job_id, rank


def _family(f: Family) -> CounterMetricFamily | GaugeMetricFamily:
    return counter_family(f.name) if f.kind == "counter" else gauge_family(f.name)


@dataclass(frozen=True)
class TelemetryView:
    """One refresh's answer: per exported series its family index, entity id and value."""

    family: npt.NDArray[np.intp] = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    entity: npt.NDArray[np.intp] = field(default_factory=lambda: np.empty(0, dtype=np.intp))
    value: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    entities: tuple[Entity, ...] = ()
    host_newest: tuple[tuple[str, str, float], ...] = ()  # cluster, host, newest sample time


@dataclass
class RankState:
    ts: float
    values: dict[str, float]  # telemetry metric name -> last value (only those reported)


class FleetExport(Collector):
    def __init__(self, forget_after: float, job_forget_after: float) -> None:
        self.forget_after = forget_after
        self.job_forget_after = job_forget_after
        mirrors = list(telemetry_families())
        self._fleet = [(m, f) for m, f in mirrors if f.labels != RANK]  # per GPU or host
        self._training = [(m, f) for m, f in mirrors if f.labels == RANK]
        self._index = {metric: i for i, (metric, _) in enumerate(self._fleet)}
        self._lock = threading.Lock()
        self._view = TelemetryView()
        self._entities: dict[EntityKey, tuple[float, float, float]] = {}  # -> firing, score, ts
        self._ranks: dict[RankKey, RankState] = {}
        self._steps: dict[RankKey, int] = {}

    # -- fed by the service thread
    def refresh(self, table: SlotTable, now: float | None) -> None:
        """Rebuild the telemetry view from the slot columns (``now``: event time, None before any)."""
        n = table.size
        family_of = np.full(len(table.metrics) + 1, -1, dtype=np.intp)
        for name, mid in table.metrics.items():
            family_of[mid] = self._index.get(name, -1)
        family = family_of[table.col("metric")[:n]]  # a free slot's metric is -1: the last entry, -1
        last_ts, value = table.col("last_ts")[:n], table.col("last_value")[:n]
        live = (table.col("partition")[:n] >= 0) & np.isfinite(last_ts)
        if now is not None:
            live &= last_ts >= now - self.forget_after
        pick = np.flatnonzero(live & (family >= 0) & np.isfinite(value))
        entity = table.col("entity")[:n].astype(np.intp)
        # one series per (family, entity): the most recently updated source series
        order = np.lexsort((last_ts[pick], entity[pick], family[pick]))
        pick = pick[order]
        key = family[pick] * (len(table.entities) + 1) + entity[pick]
        pick = pick[np.append(key[1:] != key[:-1], True)] if pick.size else pick
        entities = tuple(table.entities)
        view = TelemetryView(
            family[pick], entity[pick], value[pick].copy(), entities, _host_newest(entities, entity, last_ts, live)
        )
        with self._lock:
            self._view = view

    def detection(self, det: Detection) -> None:
        labels = det.labels
        gpu = labels.get("gpu_index") or labels.get("gpu") or ""
        key: EntityKey = (
            det.detector,
            str(labels.get("alertname") or det.detector),
            labels.get("cluster", ""),
            labels.get("host", ""),
            str(gpu),
            labels.get("job_id", ""),
            str(labels.get("rank", "")),
        )
        with self._lock:
            self._entities[key] = (1.0 if det.decision == "firing" else 0.0, det.score, det.ts)

    def step(self, step: TrainingStep) -> None:
        values = {TRAINING_STEP_SECONDS: step.step_time_s, TRAINING_LOSS: step.loss}
        if step.compute_time_s is not None:
            values[TRAINING_COMPUTE_SECONDS] = step.compute_time_s
        if step.tokens_per_s is not None:
            values[TRAINING_TOKENS_PER_SECOND] = step.tokens_per_s
        key = (step.cluster, step.job_id, str(step.rank))
        with self._lock:
            if step.step >= self._steps.get(key, -1):  # a replayed older step does not move it back
                self._steps[key] = step.step
                self._ranks[key] = RankState(step.ts, values)

    def forget(self, now: float) -> None:
        """Drop resolved entities and silent jobs (``now``: event time)."""
        with self._lock:
            resolved = [k for k, (on, _, ts) in self._entities.items() if not on and ts < now - self.forget_after]
            for entity in resolved:
                del self._entities[entity]
            newest: dict[tuple[str, str], float] = {}
            for (cluster, job, _), state in self._ranks.items():
                newest[(cluster, job)] = max(newest.get((cluster, job), state.ts), state.ts)
            gone = {job for job, ts in newest.items() if ts < now - self.job_forget_after}
            for rank in [k for k in self._ranks if (k[0], k[1]) in gone]:
                del self._ranks[rank]
                del self._steps[rank]

    # -- read by the scrape
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            view = self._view
            entities = dict(self._entities)
            ranks = dict(self._ranks)
            steps = dict(self._steps)
        yield from self._telemetry(view)
        newest = gauge_family("vigil_telemetry_last_timestamp_seconds")
        for cluster, host, ts in view.host_newest:
            newest.add_metric([cluster, host], ts)
        yield newest
        firing, score = gauge_family("vigil_detection_firing"), gauge_family("vigil_detection_score")
        for key, (state, value, _) in sorted(entities.items()):
            firing.add_metric(list(key), state)
            score.add_metric(list(key), value)
        yield firing
        yield score
        yield from self._jobs(ranks, steps, entities)

    def _telemetry(self, view: TelemetryView) -> Iterator[Metric]:
        families = [_family(f) for _, f in self._fleet]
        for fam, eid, value in zip(view.family.tolist(), view.entity.tolist(), view.value.tolist(), strict=True):
            e = view.entities[eid]
            per_gpu = len(self._fleet[fam][1].labels) == 3
            families[fam].add_metric([e.cluster, e.host, e.gpu_index] if per_gpu else [e.cluster, e.host], value)
        yield from families

    def _jobs(
        self,
        ranks: dict[RankKey, RankState],
        steps: dict[RankKey, int],
        entities: dict[EntityKey, tuple[float, float, float]],
    ) -> Iterator[Metric]:
        families = [(metric, _family(f)) for metric, f in self._training]
        step = gauge_family("vigil_training_step")
        for key, state in sorted(ranks.items()):
            step.add_metric(list(key), steps[key])
            for metric, fam in families:
                if metric in state.values:
                    fam.add_metric(list(key), state.values[metric])
        yield step
        yield from (fam for _, fam in families)
        hung = gauge_family("vigil_training_hung")
        firing = {(k[2], k[5]) for k, (state, _, _) in entities.items() if k[1] == HANG and state}
        for cluster, job in sorted({(k[0], k[1]) for k in ranks}):
            hung.add_metric([cluster, job], 1.0 if (cluster, job) in firing else 0.0)
        yield hung


def _host_newest(
    entities: tuple[Entity, ...],
    entity: npt.NDArray[np.intp],
    last_ts: npt.NDArray[np.float64],
    live: npt.NDArray[np.bool_],
) -> tuple[tuple[str, str, float], ...]:
    """The newest sample time of each host with live series (one Python step per GPU or host entity)."""
    if not live.any():
        return ()
    ids = entity[live]
    newest = np.full(len(entities), -np.inf)
    np.maximum.at(newest, ids, last_ts[live])
    per_host: dict[tuple[str, str], float] = {}
    for eid in np.unique(ids).tolist():
        e = entities[eid]
        per_host[(e.cluster, e.host)] = max(per_host.get((e.cluster, e.host), -np.inf), float(newest[eid]))
    return tuple((c, h, ts) for (c, h), ts in sorted(per_host.items()))
