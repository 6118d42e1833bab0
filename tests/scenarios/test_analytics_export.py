"""What analytics exports for dashboards, on the in-memory bus with a fake clock: the fleet's last
values per GPU and host, detection state per entity, training state per job and rank, and the
service's own health."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tests.scenarios.test_analytics_service import T0, Harness, step, xid
from vigil.events import TelemetryBatch, series_key

NONE = {"job_id": "", "rank": ""}


def gpu(host: str, index: int, **extra: str) -> dict[str, str]:
    return {"cluster": "c1", "host": host, "gpu_index": str(index), **extra}


def batch(host: str, ts: float, temps: list[float], **more: float) -> TelemetryBatch:
    series = [series_key("gpu_temperature_celsius", {"gpu_index": str(i)}) for i in range(len(temps))]
    series += [series_key(name, {"gpu_index": "0"}) for name in more]
    series += ["host_load1", series_key("gpu_throttle", {"gpu_index": "0", "reason": "hw_slowdown"})]
    values = [*temps, *more.values(), 3.5, 0.0]
    return TelemetryBatch(host, "c1", np.array([ts]), tuple(series), np.array([values]))


def test_last_value_per_gpu_and_host_and_only_catalog_metrics(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.send("telemetry", batch("node-01", T0, [60.0, 61.0], gpu_ecc_dbe_volatile_total=2.0), "node-01")
    h.send("telemetry", batch("node-01", T0 + 1, [62.0, 63.0], gpu_ecc_dbe_volatile_total=3.0), "node-01")
    h.send("telemetry", batch("node-02", T0 + 1, [70.0]), "node-02")
    h.run(3)
    assert h.metric("vigil_gpu_temperature_celsius", gpu("node-01", 0)) == 62.0
    assert h.metric("vigil_gpu_temperature_celsius", gpu("node-01", 1)) == 63.0
    assert h.metric("vigil_gpu_temperature_celsius", gpu("node-02", 0)) == 70.0
    assert h.metric("vigil_gpu_ecc_dbe_volatile_total", gpu("node-01", 0)) == 3.0  # a counter stays a counter
    assert h.metric("vigil_host_load1", {"cluster": "c1", "host": "node-02"}) == 3.5
    assert h.metric("vigil_telemetry_last_timestamp_seconds", {"cluster": "c1", "host": "node-01"}) == T0 + 1
    names = {m.name for m in h.registry.collect()}
    assert "vigil_gpu_throttle" not in names  # not in vigil.catalog.METRICS: not mirrored
    temps = [s for m in h.registry.collect() if m.name == "vigil_gpu_temperature_celsius" for s in m.samples]
    assert len(temps) == 3


def test_several_source_series_of_one_gpu_show_the_newest(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    a, b = (series_key("gpu_power_watts", {"gpu_index": "0", "pod": p}) for p in ("a", "b"))
    h.send("telemetry", TelemetryBatch("node-01", "c1", np.array([T0]), (a,), np.array([[100.0]])), "node-01")
    h.send("telemetry", TelemetryBatch("node-01", "c1", np.array([T0 + 5]), (b,), np.array([[250.0]])), "node-01")
    h.run(3)
    samples = [s for m in h.registry.collect() if m.name == "vigil_gpu_power_watts" for s in m.samples]
    assert [(s.labels, s.value) for s in samples] == [(gpu("node-01", 0), 250.0)]


def hosts_shown(h: Harness) -> set[str]:
    return {
        s.labels["host"] for m in h.registry.collect() if m.name == "vigil_gpu_temperature_celsius" for s in m.samples
    }


def test_a_forgotten_host_loses_its_series(tmp_path: Path) -> None:
    h = Harness(tmp_path, truthfulness={"forget_after": "10m"})
    h.send("telemetry", batch("node-01", T0, [60.0]), "node-01")
    h.send("telemetry", batch("node-02", T0, [65.0]), "node-02")
    h.run(3)
    assert hosts_shown(h) == {"node-01", "node-02"}
    h.send("telemetry", batch("node-02", T0 + 601, [66.0]), "node-02")  # node-01 silent for 10 min of event time
    h.run(3)
    assert hosts_shown(h) == {"node-02"}
    assert h.metric("vigil_gpu_temperature_celsius", gpu("node-02", 0)) == 66.0


def test_a_partition_moved_to_another_replica_loses_its_series(tmp_path: Path) -> None:
    h = Harness(tmp_path)  # two telemetry partitions: node-04 hashes to 0, node-01 to 1
    h.send("telemetry", batch("node-01", T0, [60.0]), "node-01")
    h.send("telemetry", batch("node-04", T0, [65.0]), "node-04")
    h.run(3)
    assert hosts_shown(h) == {"node-01", "node-04"}
    other = Harness(tmp_path / "other", bus=h.bus, clock=h.clock)  # a second replica joins the group
    kept = {tp.partition for tp in h.service.consumer.assignment() if tp.topic == h.topics.telemetry}
    moved = {tp.partition for tp in other.service.consumer.assignment() if tp.topic == h.topics.telemetry}
    assert kept | moved == {0, 1} and not kept & moved
    h.send("telemetry", batch("node-01", T0 + 1, [61.0]), "node-01")
    h.send("telemetry", batch("node-04", T0 + 1, [66.0]), "node-04")
    h.run(3)
    other.run(3)
    assert hosts_shown(h) == ({"node-04"} if 0 in kept else {"node-01"})
    assert hosts_shown(other) == ({"node-04"} if 0 in moved else {"node-01"})


def test_detection_state_per_entity_fires_and_resolves(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.send("logs", xid(79), "node-01")
    h.run(0)
    entity = {"detector": "xid", "alertname": "GpuXidFatal", **gpu("node-01", 3), **NONE}
    assert h.metric("vigil_detection_firing", entity) == 1.0
    assert h.registry.get_sample_value("vigil_detection_score", entity) is not None
    h.run(70)  # the quiet period passes: resolved
    assert h.registry.get_sample_value("vigil_detection_firing", entity) == 0.0
    count = h.registry.get_sample_value("vigil_detection_delay_seconds_count", {"detector": "xid"})
    assert count == 2  # one firing, one resolve


def test_training_state_per_rank_and_hang_per_job(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for n in range(20):
        h.send("training", step("job-a", 0, n, ts=T0 + n / 2), "job-a")
        h.send("training", step("job-a", 1, n, loss=math.nan if n == 19 else 2.0, ts=T0 + n / 2), "job-a")
        h.run(0.5, 0.5)
    rank0 = {"cluster": "c1", "job_id": "job-a", "rank": "0"}
    assert h.metric("vigil_training_step", rank0) == 19
    assert h.metric("vigil_training_step_seconds", rank0) == 0.5
    assert h.metric("vigil_training_compute_seconds", rank0) == 0.4
    assert h.metric("vigil_training_loss", rank0) == 2.0
    assert math.isnan(h.registry.get_sample_value("vigil_training_loss", {**rank0, "rank": "1"}) or 0.0)
    job = {"cluster": "c1", "job_id": "job-a"}
    assert h.registry.get_sample_value("vigil_training_hung", job) == 0.0
    h.run(12)  # no step for longer than the hang timeout
    assert h.metric("vigil_training_hung", job) == 1.0
    h.send("training", step("job-a", 0, 20, ts=T0 + 23), "job-a")
    h.run(2)
    assert h.registry.get_sample_value("vigil_training_hung", job) == 0.0
    assert h.metric("vigil_training_step", rank0) == 20


def test_snapshot_age_and_a_stalled_service_s_health(tmp_path: Path) -> None:
    h = Harness(tmp_path, snapshot_every="5s")
    h.run(6)
    assert h.metric("vigil_analytics_snapshot_age_seconds") <= 1.0
    assert h.service.health()["ok"] is True
    h.clock.advance(31.0)  # no poll for 31 x the 1 s poll timeout
    health = h.service.health()
    assert health["ok"] is False and health["poll_stalled"] is True
    assert h.metric("vigil_analytics_snapshot_age_seconds") >= 31.0
    h.service.step(0)
    assert h.service.health()["ok"] is True
