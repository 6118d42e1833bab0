"""The simulator's demo through the in-memory bus into the truthfulness detector: XID 79 is a missing GPU.

The demo schedule injects every fault kind; a GPU that falls off the bus (XID 79, node-05 GPU 6
from 60 s to 85 s) drops its series from the host's batches. The detector must page GpuMissing for
exactly that GPU and resolve it when the GPU is back, and the other faults (thermal throttling, ECC,
a straggler, a hang, NaN loss), which bend values but keep the telemetry truthful, must raise nothing.
"""

from __future__ import annotations

import threading

from vigil.analytics.config import TruthfulnessConfig
from vigil.analytics.stages.slots import SlotTable, build_frame
from vigil.analytics.stages.truthfulness import TruthfulnessStage
from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import Detection, FaultInjection, TelemetryBatch
from vigil.topics import Topics


def test_xid79_pages_gpu_missing_for_that_gpu_only_and_resolves_when_it_is_back() -> None:
    bus, topics, clock = MemoryBus(default_partitions=4), Topics(), FakeClock()
    start = clock.now()
    SimulatorRunner(FleetSimulator(SimConfig(), start), bus.producer, topics, clock).run(
        threading.Event(), duration_s=150
    )
    table = SlotTable()
    det = TruthfulnessStage(TruthfulnessConfig(), table)
    consumer = bus.consumer([topics.telemetry, topics.groundtruth], group="truth")
    found: list[Detection] = []
    truth: list[FaultInjection] = []
    while records := consumer.poll(0, max_records=50):  # polls that run ahead on some partitions
        parts = []
        for r in records:
            event = decode(r.value)
            if isinstance(event, TelemetryBatch):
                parts.append(table.admit(r.partition, event))
            elif isinstance(event, FaultInjection) and event.end is not None:
                truth.append(event)
        found += det.observe_frame(build_frame(table, parts))

    xid = next(f for f in truth if f.kind == "xid79")
    assert xid.entity == {"host": "node-05", "gpu_index": "6"} and len({f.kind for f in truth}) >= 5
    assert [(d.labels["alertname"], d.decision, d.labels["host"], d.labels["gpu_index"]) for d in found] == [
        ("GpuMissing", "firing", "node-05", "6"),
        ("GpuMissing", "resolved", "node-05", "6"),
    ]
    fired, resolved = found
    # the last sample before the fault is at start - 1 s, stale 5 intervals of 1 s later; back at the end
    assert fired.ts == xid.start + 4 and fired.window_start == fired.ts
    assert resolved.ts == xid.end
    assert fired.severity == "critical" and fired.reason["n_series"] == 8
