"""The demo's first two minutes as a timeline on the in-memory bus with a fake clock."""

from __future__ import annotations

import math
import threading

from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner

from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import Event, FaultInjection, LogEvent, TelemetryBatch, TrainingStepBatch
from vigil.topics import Topics


def test_demo_timeline_through_the_bus() -> None:
    bus, topics, clock = MemoryBus(default_partitions=4), Topics(), FakeClock()
    start = clock.now()
    SimulatorRunner(FleetSimulator(SimConfig(), start), bus.producer, topics, clock).run(
        threading.Event(), duration_s=120
    )
    consumer = bus.consumer([t.name for t in topics.all()], group="scenario")
    got: list[Event] = [decode(r.value) for r in consumer.poll(0, max_records=1_000_000)]

    truth = [e for e in got if isinstance(e, FaultInjection)]
    spans = {f.kind: (f.start - start, f.end - start) for f in truth if f.end is not None}
    assert spans["thermal"] == (25.0, 85.0) and spans["xid79"] == (60.0, 85.0) and spans["loss_nan"] == (95.0, 110.0)
    assert len(spans) == 6

    xids = [(e.code, e.host, e.gpu_index, e.ts - start) for e in got if isinstance(e, LogEvent)]
    assert (79, "node-05", 6, 60.0) in xids and (48, "node-02", 5, 35.0) in xids

    steps = [s for e in got if isinstance(e, TrainingStepBatch) for s in e.steps()]
    assert not [s for s in steps if 60.0 <= s.ts - start < 85.0]  # XID 79 hung the job
    assert all(math.isnan(s.loss) for s in steps if 96.0 <= s.ts - start < 110.0)

    hot = [
        b.values[0, b.series.index('gpu_temperature_celsius{gpu_index="2"}')]
        for b in got
        if isinstance(b, TelemetryBatch) and b.host == "node-01" and 40.0 <= b.ts[0] - start < 80.0
    ]
    assert len(hot) == 40 and min(hot) > 85.0
