"""A multivariate model live in the analytics service (in-memory bus, fake clock): the simulator's
thermal fault bends four metrics of one GPU at once; ``adaptive_mspc`` per host, scoring in its worker
thread, pages that host once, across a restart of the service half-way (warm, from its snapshot)."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import CollectorRegistry
from vigil.analytics.config import AnalyticsConfig
from vigil.analytics.service import AnalyticsService
from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner

from vigil import catalog as c
from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import Detection, FaultInjection
from vigil.topics import Topics

STAGE = {
    "stage": "model",
    "name": "host_mspc",
    "model": "adaptive_mspc",
    "per": "host",
    "metrics": [c.GPU_TEMPERATURE, c.GPU_MEMORY_TEMPERATURE, c.GPU_POWER, c.GPU_SM_CLOCK, c.GPU_UTILIZATION],
}


def test_the_host_model_pages_the_multi_metric_fault_once_across_a_restart(tmp_path: Path) -> None:
    bus, topics, clock = MemoryBus(default_partitions=2), Topics(), FakeClock()
    fault = {"kind": "thermal", "at": 400, "duration": 60, "host": "node-02", "gpu_index": 3}
    layout = {"nodes": 4, "spare_nodes": 0, "schedule": "none", "training": False}
    sim = SimConfig.model_validate({**layout, "faults": [fault]})
    SimulatorRunner(FleetSimulator(sim, clock.now()), bus.producer, topics, clock).run(
        threading.Event(), duration_s=520
    )
    config = AnalyticsConfig.model_validate({"stages": [STAGE], "max_poll_records": 40, "snapshot_every": 0})

    def service() -> AnalyticsService:
        return AnalyticsService(bus, topics, config, clock, CollectorRegistry(), tmp_path / "state")

    first = service()
    for _ in range(26):  # about half the 2,080 telemetry records, past the model's warm-up of 256 rows
        first.step(0)
    units = first.engine.held[0].units  # type: ignore[attr-defined]
    assert sum(u is not None and 256 <= u.model.seen < 512 for u in units) == 4
    first.close()  # commit: the last job settled, its detections out, models and pending rows snapshotted
    second = service()
    while second.step(0):
        pass
    second.checkpoint()
    restored = second.engine.held[0].units  # type: ignore[attr-defined]
    # warm: every complete chunk of 32 of the 520 rows went through the same model, before and after
    assert [u.model.seen for u in restored if u is not None] == [512] * 4
    second.close()

    found = [d for d in (decode(r.value) for r in bus.records(topics.detections)) if isinstance(d, Detection)]
    truth = [e for e in (decode(r.value) for r in bus.records(topics.groundtruth)) if isinstance(e, FaultInjection)]
    start = min(e.start for e in truth)
    assert [(d.labels["alertname"], d.labels["host"], d.decision) for d in found] == [
        ("HostMspcAnomaly", "node-02", "firing"),
        ("HostMspcAnomaly", "node-02", "resolved"),
    ]
    assert start <= found[0].ts <= start + 10 and found[0].reason["feature"].endswith('{gpu_index="3"}')
