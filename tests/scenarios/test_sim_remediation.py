"""The simulated fleet obeys remediation actions, as timelines on the simulator's own clock.

Each test drives ``FleetSimulator.tick(now, requests)`` second by second (the tick times are the
clock; nothing sleeps) and reads only what the fleet publishes: telemetry, training steps, ground
truth and action reports, as a real fleet would show them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vigil.collectors.sim import FleetSimulator, SimConfig, SimOutput, SimulatorRunner
from vigil.collectors.sim.inbox import ActionInbox

from vigil import catalog as c
from vigil.bus.base import TopicPartition
from vigil.bus.memory import MemoryBus
from vigil.clock import FakeClock
from vigil.codec import decode, encode
from vigil.events import ActionReport, ActionRequest, FaultInjection, TrainingStep, series_key
from vigil.topics import Topics

START = 1_767_225_600.0
SMALL = {"nodes": 4, "gpus_per_node": 4, "spare_nodes": 1, "schedule": "none", "checkpoint_every": 10}


def ask(verb: str, target: str, rid: str | None = None, **params: Any) -> ActionRequest:
    node = {"node": target} if verb not in ("restart", "checkpoint") else {}
    return ActionRequest(START, rid or f"{verb}/{target}/{sorted(params.items())}", f"fleet.{verb}", target,
                         {**node, **params})


def play(
    sim: FleetSimulator, seconds: int, actions: Mapping[int, Sequence[ActionRequest]], first: int = 0
) -> list[SimOutput]:
    """Ticks ``first`` .. ``seconds - 1`` (a list indexed from ``first``)."""
    return [sim.tick(START + k, actions.get(k, ())) for k in range(first, seconds)]


def fleet(faults: list[dict[str, Any]], **config: Any) -> FleetSimulator:
    return FleetSimulator(SimConfig(**{**SMALL, "restart_cost": 5.0, **config, "faults": faults}), START)


def steps(outs: list[SimOutput], lo: float, hi: float) -> list[TrainingStep]:
    return [s for o in outs for batch in o.training for s in batch.steps() if lo <= s.ts - START < hi]


def gpu(out: SimOutput, host: str, metric: str, index: int) -> float:
    batch = next((b for b in out.telemetry if b.host == host), None)
    key = series_key(metric, {"gpu_index": str(index)})
    return float(batch.values[-1, batch.series.index(key)]) if batch and key in batch.series else math.nan


def reports(outs: list[SimOutput]) -> dict[str, ActionReport]:
    return {r.request_id: r for o in outs for r in o.reports}


def truth(outs: list[SimOutput]) -> list[tuple[int, FaultInjection]]:
    return [(k, f) for k, o in enumerate(outs) for f in o.faults]


XID79 = {"kind": "xid79", "at": 10, "duration": 5, "host": "node-01", "gpu_index": 2}


def test_drain_and_requeue_move_the_ranks_to_the_spare_and_the_job_keeps_its_pace_after_the_restart_cost() -> None:
    sim = fleet([XID79])
    drain, requeue = ask("drain", "node-01", reason="xid 79"), ask("requeue", "node-01")
    outs = play(sim, 60, {13: [drain, requeue]})
    answered = reports(outs)
    drained = answered[drain.request_id]
    assert drained.status == "done" and "runs there until requeued" in drained.detail
    moved = answered[requeue.request_id]
    assert moved.status == "done" and moved.state["nodes"] == ["node-00", "node-02", "node-03", "node-04"]

    before, after = steps(outs, 0, 10), steps(outs, 18, 60)
    assert steps(outs, 10, 18) == []  # stopped by the GPU, then 5 s of restart from 13
    assert {s.host for s in after if 4 <= s.rank < 8} == {"node-04"}  # job node 1 now runs on the spare
    assert {s.host for s in after} == {"node-00", "node-02", "node-03", "node-04"}
    assert min(s.step for s in after) == 10_010  # the checkpoint every 10 steps: 10 s ran ~19 steps
    pace = [np.mean([s.step_time_s for s in group]) for group in (before, after)]
    assert abs(pace[1] / pace[0] - 1.0) < 0.02
    # The drained node runs nothing once the job left: idle, cooling; the spare is as busy as before.
    idle, busy = (gpu(outs[50], host, c.GPU_UTILIZATION, 0) for host in ("node-01", "node-04"))
    assert idle < 0.05 and busy > 0.85
    assert gpu(outs[50], "node-01", c.GPU_TEMPERATURE, 0) < gpu(outs[14], "node-01", c.GPU_TEMPERATURE, 0) - 15
    # The robot took the node before the scheduled end (15 s: a person's fix): the fault lasts until repaired.
    assert [(k, f.end) for k, f in truth(outs)] == [(10, None)]
    end = sim.finish(START + 60).faults[0]
    assert end.end == START + 60 and end.detail["remediation"] == {"drained_at": START + 13}


def test_a_reboot_clears_xid79_after_the_reboot_time_and_a_resume_returns_the_node_to_service() -> None:
    sim = fleet([XID79], reboot_time=10.0)
    outs = play(
        sim,
        40,
        {13: [ask("drain", "node-01"), ask("requeue", "node-01")], 14: [ask("reboot", "node-01")],
         30: [ask("resume", "node-01")]},
    )
    dark = [k for k, o in enumerate(outs) if not any(b.host == "node-01" for b in o.telemetry)]
    assert dark == list(range(14, 24))  # rebooting: not even the host series
    back = next(b for b in outs[24].telemetry if b.host == "node-01")
    assert len(back.series) == 4 * 8 + 5  # every GPU on the bus again
    assert gpu(outs[24], "node-01", c.GPU_ECC_DBE, 2) == 0.0
    # Back from the reboot the node is still drained (idle) until the resume puts it back in service.
    assert gpu(outs[28], "node-01", c.GPU_UTILIZATION, 2) < 0.05
    assert gpu(outs[32], "node-01", c.GPU_UTILIZATION, 2) > 0.85
    events = truth(outs)
    assert [(k, f.end is None) for k, f in events] == [(10, True), (24, False), (30, False)]
    ended, returned = events[1][1], events[2][1]
    assert ended.end == returned.end == START + 24
    remedy = {"drained_at": START + 13, "repaired_at": START + 24, "repaired_by": "fleet.reboot"}
    assert ended.detail["remediation"] == remedy
    assert returned.detail["remediation"]["returned_at"] == START + 30
    assert sim.finish(START + 40).faults == []


def test_a_gpu_reset_clears_xid48_only_when_asked_for_the_right_gpu_of_a_drained_node() -> None:
    xid48 = {"kind": "xid48", "at": 5, "host": "node-02", "gpu_index": 1}
    sim = fleet([xid48], gpu_reset_time=3.0)
    early, wrong = ask("reset", "node-02", gpu_index="1"), ask("reset", "node-02", gpu_index="3")
    right = ask("reset", "node-02", rid="right", gpu_index="1")
    outs = play(sim, 30, {7: [early], 8: [ask("drain", "node-02"), ask("requeue", "node-02")], 9: [wrong], 10: [right]})
    answered = reports(outs)
    refused = answered[early.request_id]
    assert refused.status == "rejected" and "drain the node first" in refused.detail
    assert steps(outs, 5, 13) == []  # the uncontained ECC error stopped the job until the requeue (+5 s)
    assert {s.host for s in steps(outs, 14, 30) if 8 <= s.rank < 12} == {"node-04"}
    # The wrong GPU is reset (and leaves the bus a while) but the fault stays; the right one ends it.
    assert answered[wrong.request_id].status == "done" and math.isnan(gpu(outs[10], "node-02", c.GPU_POWER, 3))
    events = truth(outs)
    assert [(k, f.end) for k, f in events] == [(5, None), (10, START + 10)]
    assert events[1][1].detail["remediation"]["repaired_by"] == "fleet.reset"
    assert [math.isnan(gpu(outs[k], "node-02", c.GPU_POWER, 1)) for k in (9, 10, 12, 13)] == [False, True, True, False]
    assert gpu(outs[13], "node-02", c.GPU_ECC_DBE, 1) == 0.0 < gpu(outs[9], "node-02", c.GPU_ECC_DBE, 1)


def test_a_restart_resumes_at_the_last_checkpoint_and_a_checkpoint_first_saves_the_steps() -> None:
    sim = fleet([])
    outs = play(sim, 40, {17: [ask("restart", "job-0", job="job-0")]})
    newest = max(s.step for s in steps(outs, 0, 17))
    assert steps(outs, 17, 22) == []  # the restart cost
    again = min(s.step for s in steps(outs, 22, 40))
    assert again == 10_030 < newest  # the last checkpoint (every 10 steps); the steps since are done again
    assert sim.job.lost_steps == newest + 1 - again and sim.job.restarts == 1
    # A checkpoint asked for just before a restart lands when the step in progress completes: at most the
    # one step completed after it is lost, not up to ten.
    lost = sim.job.lost_steps
    later = {40: [ask("checkpoint", "job-0", job="job-0")], 41: [ask("restart", "job-0", rid="2", job="job-0")]}
    more = play(sim, 60, later, 40)
    assert sim.job.lost_steps - lost <= 1 and sim.job.restarts == 2
    assert min(s.step for s in steps(more, 46, 60)) >= max(s.step for s in steps(more, 40, 41)) - 1


def test_requests_are_idempotent_and_a_wrong_target_changes_nothing() -> None:
    sim = fleet([XID79], reboot_time=10.0)
    twice = ask("restart", "job-0", rid="same", job="job-0")
    actions = {
        12: [twice, ask("reboot", "node-03"), ask("requeue", "node-04"), ask("drain", "node-77")],
        13: [twice, ask("restart", "job-0", job="job-9"), ask("resume", "node-03"), ask("rma", "node-01")],
    }
    outs = play(sim, 14, actions)
    first, second = (r for o in outs for r in o.reports if r.request_id == "same")
    assert first == second and sim.job.restarts == 1  # answered again, not acted again
    outs += play(sim, 30, {}, 14)
    by_id = {r.request_id: r for o in outs for r in o.reports if r.request_id != "same"}
    statuses = sorted((r.action, r.target, r.status) for r in by_id.values())
    assert statuses == [
        ("fleet.drain", "node-77", "rejected"),
        ("fleet.reboot", "node-03", "done"),
        ("fleet.requeue", "node-04", "already_done"),  # the job does not run on the spare
        ("fleet.restart", "job-0", "rejected"),  # job-9
        ("fleet.resume", "node-03", "failed"),  # rebooting: try again later
        ("fleet.rma", "node-01", "rejected"),
    ]
    # Rebooting node-03 (wrong node) stopped the job, and left node-01's GPU off the bus.
    # node-01 was never drained, so its fault ends at the scheduled time (a person's fix)
    assert [(k, f.end) for k, f in truth(outs)] == [(10, None), (15, START + 15)]
    assert steps(outs, 12, 23) == []


def test_the_runner_applies_requests_from_the_actions_topic_reports_them_and_dead_letters_bad_records() -> None:
    bus, topics, clock = MemoryBus(), Topics(), FakeClock(START)
    producer = bus.producer()
    drain = ask("drain", "node-01", rid="run-1/steps/0", reason="xid")
    producer.send(topics.name("actions"), encode(drain), key=b"node-01")
    producer.send(topics.name("actions"), b"\x00not an event", key=b"node-01")
    producer.send(topics.name("actions"), encode(ActionReport(START, "x", "fleet.drain", "node-01", "done")), key=b"x")
    producer.flush()
    inbox = ActionInbox(lambda: bus.consumer([topics.name("actions")], "vigil-sim"))
    sim = FleetSimulator(SimConfig(**SMALL), START)
    SimulatorRunner(sim, bus.producer, topics, clock, inbox=inbox).run(threading.Event(), duration_s=3)

    (record,) = bus.records(topics.name("action_reports"))
    report = decode(record.value)
    assert isinstance(report, ActionReport) and record.key == b"run-1/steps/0"
    assert (report.status, report.state, report.ts) == ("done", {"drained": True}, START)
    dead = bus.records(topics.name("actions") + ".dlq")
    assert [dict(r.headers)["vigil.error.reason"] for r in dead] == [b"invalid_event", b"unexpected_type"]
    # every record handled, then the offsets committed
    assert bus._committed["vigil-sim"] == {TopicPartition(topics.name("actions"), 0): 3}
