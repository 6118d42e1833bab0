"""Silent data corruption on one serving node, over real HTTP on loopback (the simulated serving fleet
``vigil up`` serves): its health and readiness say all is well, only its answers are wrong. The board
judges each node against the others pooled and fires for that node alone, naming its host and the
failing items with their answers; the ``canary-serving-remove`` runbook's action (``oip.unload``, the
real action class) takes it out of serving, and its next round says so."""

from __future__ import annotations

import httpx
import pytest
import yaml
from vigil.alerting.canary.board import Board
from vigil.alerting.canary.clients import client_for
from vigil.alerting.canary.rounds import run_round
from vigil.alerting.canary.simulated import MODEL, ServingFleet, probe_document
from vigil.alerting.canary.spec import load_text
from vigil.alerting.runbooks.actions.serving import OipRepository

from vigil.clock import FakeClock
from vigil.events import Detection

pytestmark = pytest.mark.integration
NODES = ["node-00", "node-01", "node-02", "node-03"]


def test_a_corrupting_gpu_is_caught_by_the_canary_and_taken_out_of_serving() -> None:
    fleet = ServingFleet(NODES, latency_s=0.001, seed=3).start()
    try:
        probe = load_text(yaml.safe_dump(probe_document(fleet, items=12, window=3)), "sim.yaml")[0]
        board, clock = Board([probe], "c1", FakeClock(1.79e9).now), FakeClock(1.79e9)
        fleet.corrupt("node-02")
        assert httpx.get(f"{fleet.url}/nodes/node-02/v2/models/{MODEL}/ready").status_code == 200  # looks fine
        out: list[Detection] = []
        with httpx.Client() as http:
            client = client_for(probe, http)
            for number in range(1, 4):
                results = [run_round(probe, arm, client, number, clock.now) for arm in probe.arms]
                assert [r.ok for r in results] == [n != "node-02" for n in NODES]
                out += board.add(results)
            firing = [d for d in out if d.decision == "firing"]
            assert [d.labels["host"] for d in firing] == ["node-02"]
            alert = firing[0]
            assert alert.labels["canary"] == "node" and alert.reason["baseline"] == "other nodes"
            assert alert.reason["failing_items"] and all(f["answer"] for f in alert.reason["failing_items"])
            assert "on node-02 failed against other nodes" in alert.summary

            unload = OipRepository("unload", fleet.node_url())
            params = {"node": alert.labels["host"], "model": alert.labels["model"]}
            assert not unload.check(params, "k")
            assert unload.execute(params, "k").ok and unload.verify(params).ok and unload.check(params, "k")
            assert fleet.status()["node-02"] == {"serving": False, "corrupted": True}
            after = [run_round(probe, arm, client, 4, clock.now, "remediation") for arm in probe.arms]
        assert [r.ok for r in after] == [True, True, False, True]
        assert after[2].detail == "not ready: model not ready: HTTP 400"
    finally:
        fleet.stop()
