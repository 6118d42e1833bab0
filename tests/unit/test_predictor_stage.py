"""The predictor stage reads the slot table's newest values once per interval and publishes Predictions."""

from __future__ import annotations

import numpy as np
import pytest
from vigil.analytics.stages.predict import PredictorStage
from vigil.analytics.stages.slots import SlotTable, build_frame

from vigil import catalog as c
from vigil.events import LogEvent, TelemetryBatch, series_key

GPU_INFO = series_key(c.GPU_INFO, {"gpu_index": "2", "serial": "1650921000123", "gpu_uuid": "GPU-abc"})


def push(table: SlotTable, ts: float, series: dict[str, float], host: str = "n1") -> None:
    batch = TelemetryBatch(
        host=host,
        cluster="dc1",
        ts=np.array([ts]),
        series=tuple(series),
        values=np.array([list(series.values())], dtype=np.float64),
    )
    build_frame(table, [table.admit(0, batch)])


def test_gpu_with_a_failed_row_remap_is_published_once_with_its_serial() -> None:
    table = SlotTable()
    stage = PredictorStage(table, every=60.0)
    for m in range(5):
        push(
            table,
            60.0 * m,
            {
                GPU_INFO: 1.0,
                series_key(c.GPU_REMAP_FAILURE, {"gpu_index": "2"}): 1.0,
                series_key(c.GPU_TEMPERATURE, {"gpu_index": "2"}): 60.0,
            },
        )
    preds = stage.run(240.0)
    risk = [p for p in preds if p.predictor == "gpu_risk"]
    assert len(risk) == 1
    assert risk[0].labels == {"cluster": "dc1", "host": "n1", "gpu_index": "2", "gpu_serial": "1650921000123"}
    assert risk[0].probability > 0.5 and "remap_failure" in risk[0].evidence
    assert stage.run(250.0) == []  # the interval has not passed
    assert [p for p in stage.run(300.0) if p.predictor == "gpu_risk"] == []  # nothing changed


def test_filling_filesystem_gets_a_time_to_full() -> None:
    table = SlotTable()
    stage = PredictorStage(table, every=60.0)
    free = series_key(c.HOST_FS_FREE, {"mountpoint": "/data"})
    size = series_key(c.HOST_FS_SIZE, {"mountpoint": "/data"})
    preds = []
    for m in range(30):
        push(table, 60.0 * m, {free: 100e9 - 1e9 * m, size: 200e9})
        preds += stage.run(60.0 * m)
    full = [p for p in preds if p.predictor == "time_to_disk_full"]
    assert full, "a filesystem losing 1 GB/min with 71 GB left must be forecast full"
    last = full[-1]
    assert last.entity == "fs:n1:/data" and last.probability == 1.0
    # free bytes / (1 GB/min) at the time it was published; republished only when it moves by 25%
    assert last.horizon_s == pytest.approx(last.evidence["free_bytes"] / 1e9 * 60.0, rel=0.1)


def test_steady_filesystem_and_cool_gpu_are_quiet() -> None:
    table = SlotTable()
    stage = PredictorStage(table, every=60.0)
    preds = []
    rng = np.random.default_rng(0)
    for m in range(30):
        push(
            table,
            60.0 * m,
            {
                series_key(c.HOST_FS_FREE, {"mountpoint": "/"}): 50e9 + rng.normal(0, 1e6),
                series_key(c.GPU_TEMPERATURE, {"gpu_index": "0"}): 60.0 + rng.normal(),
            },
        )
        preds += stage.run(60.0 * m)
    assert preds == []


def test_growing_reallocated_sectors_raise_disk_risk() -> None:
    table = SlotTable()
    stage = PredictorStage(table, every=60.0)
    r5 = series_key(c.DISK_SMART_ATTRIBUTE, {"device": "sda", "attr_id": "5"})
    r197 = series_key(c.DISK_SMART_ATTRIBUTE, {"device": "sda", "attr_id": "197"})
    push(table, 0.0, {r5: 0.0, r197: 0.0})
    assert [p for p in stage.run(0.0) if p.kind == "disk"] == []  # a clean disk is not news
    push(table, 2 * 86400.0, {r5: 24.0, r197: 3.0})
    disk = [p for p in stage.run(2 * 86400.0) if p.kind == "disk"]
    assert len(disk) == 1 and disk[0].entity == "disk:n1:sda"
    assert disk[0].probability > 0.05 and disk[0].evidence["smart_5_delta"] == 24.0


def test_fatal_xid_counts_towards_gpu_risk() -> None:
    table = SlotTable()
    stage = PredictorStage(table, every=60.0)
    push(table, 0.0, {series_key(c.GPU_TEMPERATURE, {"gpu_index": "1"}): 60.0})
    for i in range(3):
        stage.observe_log(LogEvent(ts=10.0 + i, host="n1", cluster="dc1", kind="xid", code=79, raw="", gpu_index=1))
    preds = [p for p in stage.run(60.0) if p.predictor == "gpu_risk"]
    assert len(preds) == 1 and preds[0].evidence["xid"] > 0
