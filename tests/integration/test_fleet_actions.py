"""Remediation's fleet actions against the simulator through the real broker (Tansu): ``ActionRequest``s
on the actions topic, applied by the running simulator, answered by ``ActionReport``s that the
alerting side's ``BusChannel`` reads back; repeats act once; bad records on either topic are
dead-lettered, not lost and not fatal."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from vigil.alerting.runbooks.actions.fleet import BusChannel, FleetAction
from vigil.collectors.sim import FleetSimulator, SimConfig, SimulatorRunner
from vigil.collectors.sim.inbox import ActionInbox

from vigil.bus.kafka import KafkaBus
from vigil.clock import SystemClock
from vigil.codec import decode
from vigil.events import ActionReport, ActionRequest
from vigil.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def fleet(kafka_bus: KafkaBus, unique: str) -> Iterator[tuple[SimulatorRunner, BusChannel, Topics]]:
    topics = Topics(prefix=f"fleet-{unique}")
    kafka_bus.create_topics({t.name: 1 for t in topics.all()} | {t.dlq: 1 for t in topics.all()})
    xid79 = {"kind": "xid79", "at": 0, "host": "node-01", "gpu_index": 1}
    config = SimConfig(nodes=2, gpus_per_node=2, spare_nodes=1, schedule="none", faults=[xid79], restart_cost=1.0)
    clock = SystemClock()
    inbox = ActionInbox(lambda: kafka_bus.consumer([topics.name("actions")], f"sim-{unique}"))
    runner = SimulatorRunner(FleetSimulator(config, clock.now()), kafka_bus.producer, topics, clock, inbox=inbox)
    producer = kafka_bus.producer()
    channel = BusChannel(lambda: producer, topics.name("actions"))
    stop = threading.Event()
    threads = [
        threading.Thread(target=inbox.run, args=(stop,), daemon=True),
        threading.Thread(target=runner.run, args=(stop,), daemon=True),
        threading.Thread(target=channel.run, args=(kafka_bus, topics.name("action_reports"), f"a-{unique}", stop)),
    ]
    for thread in threads:
        thread.start()
    try:
        yield runner, channel, topics
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        producer.close()


def test_drain_and_requeue_reach_the_simulator_and_come_back_as_reports(
    fleet: tuple[SimulatorRunner, BusChannel, Topics], kafka_bus: KafkaBus, unique: str
) -> None:
    runner, channel, topics = fleet
    clock = SystemClock()
    drain, requeue = (FleetAction(verb, channel, clock, timeout=60.0) for verb in ("drain", "requeue"))
    done = drain.execute({"node": "node-01", "reason": "XID 79 (test)"}, "rr-1/steps/0")
    assert done.ok and done.detail.startswith("node-01 drained") and done.data == {"drained": True}
    assert drain.check({"node": "node-01"}, "rr-1/steps/0")  # the report is here: a resumed run skips it
    moved = requeue.execute({"node": "node-01"}, "rr-1/steps/1")
    assert moved.ok and moved.data["nodes"] == ["node-00", "node-02"]  # job node 1 now on the spare
    # The same step asked again (a run resumed after a crash, before its report was read): answered with
    # the first report, and the job restarted once.
    channel.send(ActionRequest(clock.now(), "rr-1/steps/1", "fleet.requeue", "node-01", {"node": "node-01"}))
    reports = kafka_bus.consumer([topics.name("action_reports")], f"check-{unique}")
    answers: list[ActionReport] = []
    deadline = time.monotonic() + 30
    while len(answers) < 2 and time.monotonic() < deadline:
        answers += [e for r in reports.poll(0.5) if isinstance(e := decode(r.value), ActionReport)
                    and e.request_id == "rr-1/steps/1"]
    reports.close()
    assert len(answers) == 2 and answers[0] == answers[1]
    assert runner.sim.job.restarts == 1 and bool(runner.sim.state.drained[1])
    wrong = FleetAction("reset", channel, clock, timeout=60.0).execute({"node": "node-77", "gpu_index": "0"}, "rr-2/0")
    assert not wrong.ok and not wrong.retryable and "no host 'node-77'" in wrong.detail


def test_bad_records_on_either_topic_are_dead_lettered_and_the_loop_goes_on(
    fleet: tuple[SimulatorRunner, BusChannel, Topics], kafka_bus: KafkaBus, unique: str
) -> None:
    _, channel, topics = fleet
    producer = kafka_bus.producer()
    producer.send(topics.name("actions"), b"not msgpack, not json", key=b"node-00")
    producer.send(topics.name("action_reports"), b"{}", key=b"x")
    producer.flush(10)
    producer.close()
    reset = FleetAction("reset", channel, SystemClock(), timeout=60.0)
    refused = reset.execute({"node": "node-00", "gpu_index": "0"}, "rr-3/steps/0")
    assert not refused.ok and "drain the node first" in refused.detail  # in service: nvidia-smi would refuse too
    dead = kafka_bus.consumer([topics["actions"].dlq, topics["action_reports"].dlq], f"dlq-{unique}")
    reasons: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(reasons) < 2 and time.monotonic() < deadline:
        reasons += [dict(r.headers)["vigil.error.reason"] for r in dead.poll(0.5)]
    dead.close()
    assert sorted(reasons) == [b"invalid_event", b"invalid_event"]
    assert channel.rejected == 1
