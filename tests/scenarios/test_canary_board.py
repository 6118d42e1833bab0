"""The board on recorded rounds and a fake clock: when arms are judged, against what, and which
judgements become detections (a rollout that fails, the rollback that cures it; a node that lies)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vigil.alerting.canary.board import ALERTNAME, Board
from vigil.alerting.canary.spec import Arm, Item, Probe

from vigil.clock import FakeClock
from vigil.codec import decode
from vigil.events import ProbeItem, ProbeResult

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "canary"
ITEM = Item("i", {"inputs": []}, {"equals": 1})


def recorded() -> dict[str, list[ProbeResult]]:
    out: dict[str, list[ProbeResult]] = {}
    for line in (FIXTURES / "rounds-mlserver.jsonl").read_text().splitlines():
        result = decode(line.encode())
        assert isinstance(result, ProbeResult)
        out.setdefault(f"{result.target.split('@')[1]}:{result.version}", []).append(result)
    return out


def digits() -> Probe:
    arms = (Arm("v1", "http://m", "v1"), Arm("serving", "http://m"))
    return Probe("digits", "oip_v2", "digits", arms, (ITEM,), "arms", "v1", server="ml-1")


def as_arm(result: ProbeResult, arm: str) -> ProbeResult:
    return dataclasses.replace(result, target=f"digits@{arm}")


def test_a_failing_rollout_fires_once_and_its_rollback_resolves_it() -> None:
    rounds, clock = recorded(), FakeClock(1.79e9)
    board = Board([digits()], "c1", clock.now)
    v1, v2 = rounds["v1:v1"], rounds["serving:v2"]
    for n in range(4):
        assert board.add([v1[n], v2[n]]) == []  # no judgement before a full window
    judged = board.add([v1[4], v2[4]])
    # The baseline arm passes its floor, and its first pass resolves (the state is unknown after a start).
    assert [(d.labels["arm"], d.decision) for d in judged] == [("v1", "resolved"), ("serving", "firing")]
    alert = judged[1]
    assert alert.labels == {"alertname": ALERTNAME, "cluster": "c1", "probe": "digits", "model": "digits",
                            "arm": "serving", "canary": "version", "model_version": "v2", "server": "ml-1"}
    assert "v2 (arm serving) failed against v1 v1" in alert.summary and "digit-0 answered '3'" in alert.summary
    assert alert.reason["verdict"] == "fail" and alert.reason["window_rounds"] == 5
    assert board.status[("digits", "v1")].verdict == "pass"
    for n in range(5, 10):  # still failing: one detection per episode, not one per window
        out = board.add([v1[n], v2[n]])
        assert all(d.decision != "firing" for d in out)
    # Rolled back: the serving arm now answers v1, and its first window passes.
    resolved = []
    for n in range(5):
        resolved += board.add([v1[n], as_arm(v1[n], "serving")])
    serving = [d for d in resolved if d.labels["arm"] == "serving"]
    assert [(d.decision, d.labels.get("model_version")) for d in serving] == [("resolved", "v2"), ("resolved", "v1")]
    assert "version v2 no longer answers on serving" in serving[0].summary


def node_round(node: str, n: int, wrong: bool) -> ProbeResult:
    items = tuple(ProbeItem(f"i{i}", not wrong, 0.01, "" if not wrong else "expected 1, got 7", "7") for i in range(8))
    passed = sum(i.ok for i in items)
    return ProbeResult(1.79e9 + n, f"sim@{node}", "sim", passed == 8, 0.01, passed / 8, probe="sim", version="1",
                       node=node, passed=passed, total=8, items=items)


def test_a_lying_node_is_judged_against_the_others_and_named_by_host() -> None:
    arms = tuple(Arm(n, f"http://x/{n}", node=n) for n in ("node-05", "node-06", "node-07"))
    probe = Probe("sim", "oip_v2", "sim", arms, (ITEM,), "nodes")
    board, out = Board([probe], "c1", FakeClock(1.79e9).now), []
    for n in range(5):
        out += board.add([node_round(node, n, node == "node-06") for node in ("node-05", "node-06", "node-07")])
    firing = [d for d in out if d.decision == "firing"]
    assert [d.labels["host"] for d in firing] == ["node-06"] and firing[0].labels["canary"] == "node"
    assert firing[0].reason["baseline"] == "other nodes"
    alpha = firing[0].reason["alpha_per_test"]
    assert 0 < alpha <= 0.01 / 3  # split over the three nodes judged together


def test_marginal_changes_nothing() -> None:
    probe = dataclasses.replace(digits(), arms=(Arm("serving", "http://m"),), mode="single", baseline=None)
    board = Board([probe], "c1", FakeClock(1.79e9).now)
    good = recorded()["v1:v1"]
    out = []
    for n in range(5):
        out += board.add([as_arm(good[n], "serving")])
    assert [d.decision for d in out] == ["resolved"]  # the first pass after a start clears any old alert
    for n in range(5, 10):
        out = board.add([as_arm(good[n], "serving")])
        assert out == []  # known resolved: nothing more to say
