"""Analytics service timelines on the in-memory bus with a fake clock (never sleeping)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService

from vigil.bus import Header, Record, TopicPartition
from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode, encode
from vigil.events import Detection, LogEvent, TelemetryBatch, TrainingStep, series_key
from vigil.topics import Topics

T0 = 1_767_225_600.0


class Harness:
    def __init__(self, tmp: Path, bus: MemoryBus | None = None, clock: FakeClock | None = None, **cfg: Any) -> None:
        self.topics = Topics()
        self.bus = bus or MemoryBus()
        self.bus.create_topics({self.topics.telemetry: 2, self.topics.logs: 1, self.topics.training: 1})
        self.clock = clock or FakeClock(T0)
        self.registry = CollectorRegistry()
        self.config = AnalyticsConfig.model_validate(cfg)
        self.service = AnalyticsService(self.bus, self.topics, self.config, self.clock, self.registry, tmp)
        self.producer = self.bus.producer()
        self.seen = 0

    def send(self, stream: str, event: Any, key: str) -> None:
        self.producer.send(self.topics.name(stream), encode(event), key=key.encode())

    def run(self, seconds: float = 1.0, step: float = 1.0) -> list[Detection]:
        """Drain the topics, then advance the clock in ``step`` increments, stepping each time."""
        elapsed = 0.0
        while True:
            while self.service.step(0):
                pass
            if elapsed >= seconds:
                break
            self.clock.advance(step)
            elapsed += step
        return self.new_detections()

    def new_detections(self) -> list[Detection]:
        records = self.bus.records(self.topics.detections)
        out = [d for d in (decode(r.value) for r in records[self.seen :]) if isinstance(d, Detection)]
        self.seen = len(records)
        return out

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0


def alerts(found: Iterable[Detection]) -> list[tuple[str, str]]:
    return [(d.labels["alertname"], d.decision) for d in found]


def xid(code: int, gpu: int = 3, host: str = "node-01", ts: float = T0) -> LogEvent:
    return LogEvent(ts, host, "c1", "xid", code, f"NVRM: Xid (PCI:0000:1b:00): {code}, ...", gpu_index=gpu)


def test_xid_79_pages_fatal_with_action_and_resolves_after_the_quiet_period(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.send("logs", xid(79), "node-01")
    h.send("logs", xid(79, ts=T0 + 1), "node-01")  # same episode: no second page
    h.send("logs", xid(13, ts=T0 + 2), "node-01")  # an application XID is a different alert
    found = h.run(0)
    assert alerts(found) == [("GpuXidFatal", "firing"), ("GpuXidError", "firing")]
    fatal = found[0]
    assert fatal.labels == {
        "alertname": "GpuXidFatal",
        "cluster": "c1",
        "host": "node-01",
        "xid": "79",
        "gpu_index": "3",
    }
    assert fatal.reason["fatal"] is True and fatal.reason["action"] in {"reset_gpu", "drain_and_rma"}
    assert fatal.severity == "critical" and fatal.reason["name"] == "GPU has fallen off the bus"
    assert h.run(50) == []  # no records arrive; the periodic tick keeps it firing until quiet
    assert alerts(h.run(15)) == [("GpuXidFatal", "resolved"), ("GpuXidError", "resolved")]


def step(job: str, rank: int, n: int, *, loss: float = 2.0, compute: float = 0.4, ts: float = T0) -> TrainingStep:
    return TrainingStep(
        ts, job, rank, f"node-{rank // 8:02d}", n, loss, 0.5, gpu_index=rank % 8, compute_time_s=compute, cluster="c1"
    )


def test_hang_fires_on_the_clock_without_records_and_resolves_when_steps_resume(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for n in range(20):
        h.send("training", step("job-a", 0, n, ts=T0 + n / 2), "job-a")
        h.run(0.5, 0.5)
    assert h.new_detections() == []
    found = h.run(12)  # min_timeout 10 s beats 8 x 0.5 s
    assert alerts(found) == [("TrainingHang", "firing")]
    assert found[0].labels == {"alertname": "TrainingHang", "cluster": "c1", "job_id": "job-a"}
    h.send("training", step("job-a", 0, 21, ts=T0 + 22.5), "job-a")
    assert alerts(h.run(0)) == [("TrainingHang", "resolved")]
    job = h.service.engine.events["training"][0].jobs["job-a"]
    assert max(job.report_gaps) == 0.5  # the hang's 13 s of silence did not become the job's cadence


def test_non_finite_loss_fires_at_once_and_resolves_after_finite_steps(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for n in range(10):
        h.send("training", step("job-b", 0, n), "job-b")
    h.send("training", step("job-b", 0, 10, loss=math.nan), "job-b")
    h.send("training", step("job-b", 1, 10, loss=math.inf), "job-b")
    found = h.run(0)
    assert alerts(found) == [("TrainingLossNonFinite", "firing")]
    assert found[0].severity == "critical" and found[0].labels["job_id"] == "job-b"
    for n in range(11, 16):
        h.send("training", step("job-b", 0, n), "job-b")
    assert alerts(h.run(0)) == [("TrainingLossNonFinite", "resolved")]


def test_straggler_rank_is_named_with_its_host_and_gpu(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rng = np.random.default_rng(3)
    for n in range(60):
        for rank in range(16):
            slow = rank == 9 and n >= 40
            compute = 0.4 + rng.normal(0, 0.004) + (0.3 if slow else 0.0)
            h.send("training", step("job-c", rank, n, compute=compute, ts=T0 + n / 2), "job-c")
    found = [d for d in h.run(0) if d.labels["alertname"] == "TrainingStraggler"]
    assert [d.decision for d in found] == ["firing"]
    assert found[0].labels == {
        "alertname": "TrainingStraggler",
        "cluster": "c1",
        "job_id": "job-c",
        "rank": "9",
        "host": "node-01",
        "gpu_index": "1",
    }
    assert found[0].reason["peer_z"] > 4 and found[0].reason["own_z"] > 4


def json_detection_with_naive_ts() -> bytes:
    body = {
        "type": "LogEvent",
        "v": 1,
        "ts": "2026-01-01T00:00:00",
        "host": "h",
        "cluster": "c",
        "kind": "xid",
        "code": 79,
        "raw": "",
    }
    return json.dumps(body).encode()


BAD = {
    "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8)),
    "unknown schema version": msgpack.packb({"t": "LogEvent", "v": 99, "ts": int(T0 * 1e9)}),
    "naive ISO timestamp": json_detection_with_naive_ts(),
    "NaN in a count field": msgpack.packb(
        {
            "t": "TrainingStep",
            "v": 1,
            "ts": int(T0 * 1e9),
            "job_id": "j",
            "rank": math.nan,
            "host": "h",
            "step": 1,
            "loss": 1.0,
            "step_time_s": 0.5,
        }
    ),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_malformed_record_goes_to_the_dlq_and_the_service_continues(tmp_path: Path, what: str) -> None:
    h = Harness(tmp_path)
    topic = h.topics.logs
    h.producer.send(topic, BAD[what], key=b"node-01")
    h.send("logs", xid(79), "node-01")
    found = h.run(0)
    assert alerts(found) == [("GpuXidFatal", "firing")]  # the good record after the bad one is scored
    dlq = h.bus.records(topic + ".dlq")
    assert len(dlq) == 1 and dlq[0].value == BAD[what]
    assert dict(dlq[0].headers)["vigil.error.reason"] == b"invalid_event"
    assert h.metric("vigil_dead_letter_records_total", {"topic": topic, "reason": "invalid_event"}) == 1


def telemetry(host: str, t: int, temp: float, rng: np.random.Generator) -> TelemetryBatch:
    keys = [
        series_key("gpu_power_watts", {"gpu_index": "0"}),
        series_key("gpu_temperature_celsius", {"gpu_index": "0"}),
    ]
    values = np.array([[300 + rng.normal(0, 5), temp]])
    return TelemetryBatch(host, "c1", np.array([T0 + t]), tuple(keys), values)


def test_restart_resumes_warm_and_does_not_refire_what_already_fired(tmp_path: Path) -> None:
    bus, clock, rng = MemoryBus(), FakeClock(T0), np.random.default_rng(5)
    first = Harness(tmp_path, bus, clock)
    for t in range(60):
        first.send(
            "telemetry", telemetry("node-07", t, 60 + rng.normal(0, 0.5) + (40 if t >= 45 else 0), rng), "node-07"
        )
    found = first.run(1)
    assert ("GpuOverTemperature", "firing") in alerts(found)
    slot = first.service.engine.slots.slot(0, "c1", "node-07", 'gpu_power_watts{gpu_index="0"}')
    cols = first.service.engine.slots.cols
    warm_n, warm_mean, warm_mad = int(cols["z_n"][slot]), float(cols["z_mean"][slot]), float(cols["z_mad"][slot])
    assert warm_n > 30
    first.service.close()
    second = Harness(tmp_path, bus, clock)
    second.seen = len(bus.records(second.topics.detections))
    engine = second.service.engine
    restored = engine.slots.slot(
        engine.pid(TopicPartition(second.topics.telemetry, 0)), "c1", "node-07", 'gpu_power_watts{gpu_index="0"}'
    )
    assert int(engine.slots.col("z_n")[restored]) == warm_n  # no warm-up again
    assert engine.slots.col("z_mean")[restored] == warm_mean and engine.slots.col("z_mad")[restored] == warm_mad
    for t in range(60, 70):
        second.send("telemetry", telemetry("node-07", t, 100, rng), "node-07")
    assert second.run(1) == []  # still over temperature: firing already, nothing new to say


class Recorder:
    """A fake producer and consumer that record the order of the calls that matter."""

    def __init__(self, records: list[Record]) -> None:
        self.calls: list[str] = []
        self.records = records

    # Producer
    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Sequence[Header] = ()) -> None:
        self.calls.append(f"send:{topic}")

    def flush(self, timeout_s: float | None = None) -> None:
        self.calls.append("flush")

    # Consumer
    def poll(self, timeout_s: float, max_records: int = 500) -> list[Record]:
        out, self.records = self.records, []
        return out

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self.calls.append(f"commit:{offsets}")

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("vigil.logs.v1", 0)}

    def connected(self) -> bool:
        return True

    def log_end(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in tps}  # the lag watch's question; not an ordered call

    def committed(self, tp: TopicPartition) -> int | None:
        return None

    def close(self, timeout_s: float = 5.0) -> None:
        self.calls.append("close")


class RecordingBus:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def producer(self) -> Recorder:
        return self.recorder

    def consumer(self, topics: Iterable[str], group: str, on_assign: Any = None, on_revoke: Any = None) -> Recorder:
        return self.recorder

    def create_topics(self, partitions: dict[str, int]) -> None:
        return

    def close(self) -> None:
        return


def test_commit_order_is_publish_flush_snapshot_commit(tmp_path: Path) -> None:
    record = Record("vigil.logs.v1", 0, 41, b"node-01", encode(xid(79)))
    recorder = Recorder([record])
    clock = FakeClock(T0)
    service = AnalyticsService(
        RecordingBus(recorder), Topics(), AnalyticsConfig(snapshot_every=5), clock, CollectorRegistry(), tmp_path
    )
    snap = tmp_path / "vigil.logs.v1-0.snap"
    service.step(0)
    assert recorder.calls == ["send:vigil.detections.v1"] and not snap.exists()  # not every poll
    clock.advance(5)
    original = service.store.save

    def save(tp: TopicPartition, body: dict[str, Any]) -> None:
        recorder.calls.append("snapshot")
        original(tp, body)

    service.store.save = save  # type: ignore[method-assign]
    service.step(0)
    tp = TopicPartition("vigil.logs.v1", 0)
    assert recorder.calls[1:] == ["flush", "snapshot", f"commit:{ {tp: 42} }"]
    assert snap.exists()


def test_a_job_that_reports_every_50th_step_is_not_hung_between_reports(tmp_path: Path) -> None:
    # 0.5 s steps, one report per 50 steps (a Hugging Face logging_steps of 50): 25 s of silence
    # between reports is the job's cadence, not a hang; 8 such gaps without a report is one.
    h = Harness(tmp_path)
    for i in range(8):
        h.send("training", step("job-a", 0, 50 * i, ts=T0 + 25 * i), "job-a")
        assert h.run(25, 1) == [], f"report {i}"
    assert h.service.engine.events["training"][0].timeout(h.service.engine.events["training"][0].jobs["job-a"]) == 200
    found = h.run(180, 1)
    assert alerts(found) == [("TrainingHang", "firing")]
    assert found[0].reason["timeout_s"] == 200 and found[0].reason["silent_s"] > 200


def test_a_job_silent_after_its_first_report_is_hung_after_the_startup_timeout(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.send("training", step("job-a", 0, 0), "job-a")
    assert h.run(290, 10) == []  # no cadence yet: the first steps compile and join NCCL
    assert alerts(h.run(20, 10)) == [("TrainingHang", "firing")]


def test_a_stalled_consumer_does_not_take_its_own_delay_for_a_hang(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for n in range(20):
        h.send("training", step("job-a", 0, n, ts=T0 + n / 2), "job-a")
    h.run(0)
    # The consumer is away for 30 s while the job keeps stepping; then it reads the backlog.
    h.clock.advance(30)
    for n in range(20, 80):
        h.send("training", step("job-a", 0, n, ts=T0 + n / 2), "job-a")
    assert h.run(0) == []
    assert h.run(5) == []  # caught up: idle time counts again, and 5 s is well inside the timeout


def test_hang_fires_in_event_time_while_the_rest_of_the_fleet_keeps_reporting(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rng = np.random.default_rng(0)
    for n in range(20):
        h.send("training", step("job-a", 0, n, ts=T0 + n / 2), "job-a")
    h.run(0)
    # Steps stop; telemetry keeps arriving, read as a backlog while only 1 s of wall time passes:
    # the job has been silent for 14.5 s of event time.
    for t in range(10, 25):
        h.send("telemetry", telemetry("node-01", t, 60.0, rng), "node-01")
    found = h.run(1, 1)
    assert ("TrainingHang", "firing") in alerts(found)


def test_a_snapshot_from_another_log_is_discarded_and_no_record_is_skipped(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    for n in range(5):
        first.send("logs", xid(13, ts=T0 + n), "node-01")
    first.run(0)
    first.service.checkpoint()
    first.service.close()
    # Same state folder, fresh broker: the old snapshot says "logs partition 0 is read up to 5".
    second = Harness(tmp_path, MemoryBus())
    second.send("logs", xid(79), "node-01")
    assert alerts(second.run(0)) == [("GpuXidFatal", "firing")]
    assert second.metric("vigil_analytics_snapshots_discarded_total", {"topic": second.topics.logs}) == 1


def test_predictions_are_published_to_their_topic_keyed_by_entity(tmp_path: Path) -> None:
    """A GPU whose row remapping failed and that threw fatal XIDs: the service publishes its risk."""
    h = Harness(tmp_path, predict={"every": "30s"})
    h.bus.create_topics({h.topics.predictions: 1})
    info = series_key("gpu_info", {"gpu_index": "3", "serial": "S-BAD"})
    remap = series_key("gpu_row_remap_failure", {"gpu_index": "3"})
    for i in range(3):
        batch = TelemetryBatch("node-01", "c1", np.array([T0 + 30.0 * i]), (info, remap), np.array([[1.0, 1.0]]))
        h.send("telemetry", batch, "node-01")
        h.run(30)
    h.send("logs", xid(79, ts=T0 + 61), "node-01")
    h.run(60)
    records = h.bus.records(h.topics.predictions)
    preds = [decode(r.value) for r in records]
    assert preds and all(r.key == b"gpu:node-01/3" for r in records)
    first = preds[0]
    assert first.predictor == "gpu_risk" and first.labels["gpu_serial"] == "S-BAD" and first.probability > 0.5
    assert h.metric("vigil_analytics_predictions_total", {"predictor": "gpu_risk"}) == len(preds)


def test_a_restarted_analytics_keeps_the_lemon_score_of_a_gpu_serial(tmp_path: Path) -> None:
    """Predictor state with days of memory (per-serial incidents) rides in the telemetry snapshot."""
    bus, clock = MemoryBus(), FakeClock(T0)
    first = Harness(tmp_path, bus, clock, predict={"every": "30s"})
    bus.create_topics({first.topics.predictions: 1})
    info = series_key("gpu_info", {"gpu_index": "3", "serial": "S-LEMON"})
    temp = series_key("gpu_temperature_celsius", {"gpu_index": "3"})
    batch = TelemetryBatch("node-01", "c1", np.array([T0]), (info, temp), np.array([[1.0, 60.0]]))
    first.send("telemetry", batch, "node-01")
    first.run(30)  # the predictor learns the GPU's serial
    first.send("logs", xid(79, ts=T0 + 31), "node-01")
    first.send("logs", xid(48, ts=T0 + 32), "node-01")
    first.run(31)
    before = first.service.engine.predictors
    assert before is not None and before.gpu.lemon_score("S-LEMON", T0 + 40) > 1.9
    first.service.close()

    second = Harness(tmp_path, bus, clock, predict={"every": "30s"})
    second.service.step(0)  # assignment restores the partition snapshots
    after = second.service.engine.predictors
    assert after is not None
    assert after.gpu.lemon_score("S-LEMON", T0 + 40) == pytest.approx(before.gpu.lemon_score("S-LEMON", T0 + 40))
    assert "node-01/3" in after.gpu.gpus and after.gpu.gpus["node-01/3"].serial == "S-LEMON"
