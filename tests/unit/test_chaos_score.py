"""Scoring a chaos run: the kill plan, ground truth merged by fault id, once / twice / lost."""

from __future__ import annotations

import itertools
import json

import msgpack

from vigil.cli.chaos import poison_records
from vigil.cli.chaos_score import UNITS, merge_truth, plan_kills, score_faults, summary
from vigil.cli.report import Notification
from vigil.codec import decode
from vigil.errors import InvalidEvent
from vigil.events import FaultInjection
from vigil.topics import Topics

GPU = {"host": "node-01", "gpu_index": "2"}


def fault(fault_id: str, start: float, end: float | None, entity: dict[str, str] | None = None) -> FaultInjection:
    return FaultInjection(fault_id, "thermal", entity or GPU, start, end, {})


def page(at: float, dedup_key: str, labels: dict[str, str] | None = None, reason: str = "first") -> Notification:
    labels = labels or {"alertname": "GpuHot", **GPU}
    return Notification(at, "firing", dedup_key.split(":")[0], labels, reason, dedup_key)


def test_kills_cover_every_unit_in_a_seeded_order_spread_over_the_span() -> None:
    plan = plan_kills(seed=3, kills=8, warmup=20, until=180)
    assert plan == plan_kills(seed=3, kills=8, warmup=20, until=180)
    assert plan != plan_kills(seed=4, kills=8, warmup=20, until=180)
    assert sorted(k.unit for k in plan[:4]) == sorted(UNITS) and [k.unit for k in plan[4:]] == [
        k.unit for k in plan[:4]
    ]
    times = [k.at for k in plan]
    assert times == sorted(times) and times[0] >= 20 and times[-1] <= 180
    assert min(b - a for a, b in itertools.pairwise(times)) >= 10  # half a 20 s slot at least
    assert plan_kills(seed=0, kills=0, warmup=20, until=180) == []


def test_truth_is_merged_by_fault_id_whatever_the_order_and_the_repeats() -> None:
    events = [
        fault("f-1", 100, None),
        fault("f-2", 130, None),
        fault("f-1", 100, 160),  # the end event
        fault("f-2", 130, None),  # a restarted simulator began it again
        fault("f-1", 100, 160),  # ... and republished the ended one
    ]
    merged = merge_truth(events)
    assert [(f.fault_id, f.start, f.end) for f in merged] == [("f-1", 100, 160), ("f-2", 130, None)]


def test_a_fault_is_paged_once_twice_or_lost() -> None:
    once, twice, lost = fault("f-1", 100, 130), fault("f-2", 200, 230, {"host": "node-03", "gpu_index": "0"}), None
    lost = fault("f-3", 300, 330, {"host": "node-05", "gpu_index": "6"})
    other_gpu = {"alertname": "GpuHot", "host": "node-03", "gpu_index": "0"}
    notes = [
        page(104, "a:1"),
        page(110, "a:1", reason="escalated"),  # same episode, more severe: not a second page
        page(205, "b:1", other_gpu),
        page(290, "b:1", other_gpu),  # the outbox resent the episode after a crash, after the fault's window
        page(140, "c:1", {"alertname": "GpuHot", "host": "node-05", "gpu_index": "6"}),  # before f-3 began
        Notification(305, "resolved", "d", {"alertname": "GpuHot", "host": "node-05", "gpu_index": "6"}, "", "d:1"),
    ]
    outcomes = score_faults([once, twice, lost], notes)
    assert [o.verdict for o in outcomes] == ["paged_once", "paged_twice", "lost"]
    doc = summary(outcomes, dlq=5, restarts={"broker": 1, "sim": 2}, recoveries=[3.24, 12.06])
    assert doc == {
        "faults": 3,
        "paged_once": 1,
        "lost": 1,
        "paged_twice": 1,
        "dlq": 5,
        "restarts": {"broker": 1, "sim": 2},
        "max_recovery_s": 12.1,
    }


def test_two_episodes_of_one_fault_are_not_paged_twice() -> None:
    outcomes = score_faults([fault("f-1", 100, 200)], [page(105, "a:100"), page(160, "a:150")])
    assert outcomes[0].verdict == "paged_once"


def test_a_kill_that_never_recovered_leaves_max_recovery_null() -> None:
    assert summary([], 0, {}, [4.0, None])["max_recovery_s"] is None
    assert summary([], 0, {}, [])["max_recovery_s"] == 0.0


def test_the_poison_records_are_the_issue_s_three_plus_garbage() -> None:
    records = poison_records(Topics(), "dc1", 1_767_225_600.0, seed=0)
    topics = Topics()
    assert [t for t, _ in records] == [
        topics.detections,
        topics.predictions,
        topics.logs,
        topics.telemetry,
        topics.detections,
    ]
    detection = json.loads(records[0][1])
    assert detection["type"] == "Detection" and detection["ts"] == "9999-12-31T23:59:59-14:00"
    # Read raw, not decoded: once decode range-checks them they are exactly what it must refuse.
    prediction = json.loads(records[1][1])
    assert prediction["type"] == "Prediction" and prediction["horizon_s"] == 1e12
    xid = msgpack.unpackb(records[2][1])
    assert xid["t"] == "LogEvent" and xid["code"] == 79 and xid["gpu_index"] == 2**63
    for _, garbage in records[3:]:
        try:
            decode(garbage)
        except InvalidEvent:
            continue
        raise AssertionError("garbage decoded")
