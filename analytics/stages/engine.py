"""The bus-free core of analytics: decoded events in, Detections out, state per partition.

Kept apart from the consumer loop so the benchmark and tests drive it without a broker. Every
series, GPU, host and job belongs to exactly one partition (telemetry and logs are keyed by host,
training by job), so a partition's state can be snapshotted, restored and dropped on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.stages import AnyStage, EventStage, TelemetryStage, build_registry
from vigil.analytics.stages.base import HeldStage
from vigil.analytics.stages.limits import SeriesBudget, SeriesLimitAlerts
from vigil.analytics.stages.predict import PredictorStage
from vigil.analytics.stages.slots import IntArray, SlotTable, build_frame

from vigil.bus import TopicPartition
from vigil.events import Detection, LogEvent, Prediction, TelemetryBatch
from vigil.xid import XidCatalog

BASE_COLUMNS = ["last_value", "last_ts"]


class Engine:
    def __init__(self, config: AnalyticsConfig, catalog: XidCatalog | None = None) -> None:
        self.config = config
        limits = config.series_limit
        self.slots = SlotTable(budget=SeriesBudget(limits.per_host, limits.per_partition))
        self.limit_alerts = SeriesLimitAlerts(limits.clear_after)
        self.dropped: dict[str, int] = {}  # samples cut by the series limits, by scope, since last taken
        registry = build_registry()
        self.stages: list[AnyStage] = [
            registry.create(spec.stage, spec=spec, config=config, slots=self.slots, catalog=catalog)
            for spec in config.stages
        ]
        self.telemetry = [d for d in self.stages if isinstance(d, TelemetryStage)]
        self.held = [d for d in self.telemetry if isinstance(d, HeldStage)]
        self.events: dict[str, list[EventStage]] = {"logs": [], "training": []}
        for det in self.stages:
            if isinstance(det, EventStage):
                self.events[det.stream].append(det)
        self._pids: dict[TopicPartition, int] = {}
        p = config.predict
        self.predictors = (
            PredictorStage(
                self.slots,
                every=p.every,
                catalog=catalog,
                disk_model=p.disk_model,
                disk_horizon_days=p.disk_horizon_days,
                full_within=p.full_within,
                thermal_within=p.thermal_within,
            )
            if p.enabled
            else None
        )

    def pid(self, tp: TopicPartition) -> int:
        """A small integer for a partition, used in the slot table's partition column."""
        return self._pids.setdefault(tp, len(self._pids))

    # -- detection
    def observe_telemetry(self, batches: Sequence[tuple[int, TelemetryBatch]]) -> list[Detection]:
        parts: list[tuple[IntArray, TelemetryBatch]] = [self.slots.admit(p, b) for p, b in batches]
        frame = build_frame(self.slots, parts)
        out: list[Detection] = []
        for det in self.telemetry:
            out.extend(det.observe_frame(frame))
        if self.slots.refusals or self.limit_alerts.open:
            out.extend(self._series_limit(max((float(b.ts.max()) for _, b in batches if b.ts.size), default=0.0)))
        return out

    def settle(self) -> list[Detection]:
        """Wait for work still under way in the stages (model scoring in a worker) and return what it
        decided: before a snapshot, so the snapshot reflects every consumed record."""
        return [d for stage in self.held for d in stage.settle()]

    def close(self) -> None:
        for stage in self.held:
            stage.close()

    def _series_limit(self, now: float) -> list[Detection]:
        """Count what the series limits cut, page once per host over its limit, resolve when it stops."""
        refusals = self.slots.take_refusals()
        for r in refusals:
            self.dropped[r.scope] = self.dropped.get(r.scope, 0) + r.samples
        return self.limit_alerts.update(refusals) + self.limit_alerts.resolve(now)

    def take_dropped(self) -> dict[str, int]:
        out, self.dropped = self.dropped, {}
        return out

    def observe_event(self, stream: str, event: Any, partition: int, now: float) -> list[Detection]:
        out: list[Detection] = []
        for det in self.events.get(stream, ()):
            out.extend(det.observe_event(event, partition, now))
        if self.predictors is not None and isinstance(event, LogEvent):
            self.predictors.observe_log(event)
        return out

    def predictions(self, now: float) -> list[Prediction]:
        """Failure predictions and forecasts, at most once per ``predict.every`` of event time."""
        return self.predictors.run(now) if self.predictors is not None else []

    def tick(self, now: float) -> list[Detection]:
        out: list[Detection] = [d for stage in self.held for d in stage.pump()]
        for dets in self.events.values():
            for det in dets:
                out.extend(det.tick(now))
        return out

    # -- state per partition
    def snapshot(self, tp: TopicPartition, stream: str) -> dict[str, Any]:
        pid = self.pid(tp)
        if stream == "telemetry":
            columns = BASE_COLUMNS + [c for d in self.telemetry for c in d.columns()]
            slots = self.slots.slots_of(pid)
            hosts = self._hosts(slots)
            body: dict[str, Any] = {"telemetry": self.slots.export(slots, columns)}
            body["series_limit"] = self.limit_alerts.snapshot(hosts)
            if self.predictors is not None:  # keyed by host, and a host's telemetry is one partition
                body["predict"] = self.predictors.snapshot(hosts)
            if self.held:
                body["stages"] = {stage.name: stage.snapshot(pid) for stage in self.held}
            return body
        return {det.name: det.snapshot(pid) for det in self.events.get(stream, ())}

    def restore(self, tp: TopicPartition, stream: str, body: dict[str, Any]) -> None:
        pid = self.pid(tp)
        if stream == "telemetry":
            if "telemetry" in body:
                self.slots.import_(pid, body["telemetry"])
                for tdet in self.telemetry:
                    tdet.rebuild()
            self.limit_alerts.restore(body.get("series_limit") or {})
            if self.predictors is not None and "predict" in body:
                self.predictors.restore(body["predict"])
            held = body.get("stages") or {}
            for stage in self.held:
                if stage.name in held:
                    stage.restore(pid, held[stage.name])
            return
        for det in self.events.get(stream, ()):
            if det.name in body:
                det.restore(pid, body[det.name])

    def _hosts(self, slots: IntArray) -> set[str]:
        return {key[1] for key in (self.slots.keys[s] for s in slots.tolist()) if key is not None}

    def drop(self, tp: TopicPartition, stream: str) -> None:
        pid = self.pid(tp)
        if stream == "telemetry":
            self.limit_alerts.drop(self._hosts(self.slots.slots_of(pid)))
            for stage in self.held:
                stage.drop(pid)
            self.slots.release(pid)
            for tdet in self.telemetry:
                tdet.rebuild()
            return
        for det in self.events.get(stream, ()):
            det.drop(pid)
