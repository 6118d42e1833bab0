"""The canary's figures (``vigil bench canary``): probe throughput, the judge's decision time, and the
false-fail rate of a healthy version judged against itself.

- **throughput**: ``workers`` threads each run rounds of a per-node probe (``items`` golden items)
  against the simulated serving fleet (:mod:`.simulated`, real HTTP on loopback, ``latency_s``
  median service time) for ``seconds``; golden items (requests sent, answers checked) and rounds
  per wall second. Judging is not included (next figure).
- **judge**: wall time of one judgement: ``judge`` on a window of ``window`` rounds of ``items``
  items against a baseline window, and ``Board.add`` of one round that completes a window (the
  service's path: sampling the windows, judging every arm, building detections); median of
  ``repeats`` calls.
- **false fails**: ``rounds`` rounds of two arms serving the same healthy version (seeded: latency
  log-normal, median 20 ms, sigma 0.3; each item flaky with probability ``flaky``) through the
  board, in ``arms`` mode (canary against baseline) and in ``nodes`` mode (8 nodes, each against
  the others pooled). Every judgement the board makes is counted; a fail is a false fail.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import yaml
from vigil.alerting.canary.board import Board
from vigil.alerting.canary.clients import client_for
from vigil.alerting.canary.judge import judge, sample
from vigil.alerting.canary.rounds import run_round
from vigil.alerting.canary.simulated import ServingFleet, probe_document
from vigil.alerting.canary.spec import Arm, Item, Mode, Probe, load_text

from vigil.events import ProbeItem, ProbeResult


def throughput(seconds: float, nodes: int, items: int, workers: int, latency_s: float) -> dict[str, Any]:
    fleet = ServingFleet([f"node-{n:02d}" for n in range(nodes)], latency_s=latency_s).start()
    try:
        probe = load_text(yaml.safe_dump(probe_document(fleet, items=items)), "bench.yaml")[0]
        counts = [0] * workers
        deadline = time.perf_counter() + seconds

        def work(slot: int) -> None:
            with httpx.Client() as http:
                client = client_for(probe, http)
                arm = probe.arms[slot % len(probe.arms)]
                while time.perf_counter() < deadline:
                    result = run_round(probe, arm, client, 1, time.time)
                    if not result.ok:
                        raise RuntimeError(f"a healthy round failed: {result.detail}")
                    counts[slot] += 1

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    finally:
        fleet.stop()
    rounds = sum(counts)
    return {"seconds": round(wall, 2), "workers": workers, "items_per_round": items, "server_latency_s": latency_s,
            "rounds_per_s": round(rounds / wall, 1), "items_per_s": round(rounds * items / wall, 1)}


def healthy_rounds(
    rng: np.random.Generator, probe: str, arm: str, count: int, items: int, flaky: float, node: str = ""
) -> list[ProbeResult]:
    latency = rng.lognormal(np.log(0.02), 0.3, size=(count, items))
    ok = rng.random((count, items)) >= flaky
    out = []
    for n in range(count):
        outcome = tuple(
            ProbeItem(f"i{k}", bool(ok[n, k]), float(latency[n, k]), "" if ok[n, k] else "flaky", "1")
            for k in range(items)
        )
        passed = int(ok[n].sum())
        out.append(ProbeResult(float(n), f"{probe}@{arm}", "m", passed == items, float(np.median(latency[n])),
                               passed / items, probe=probe, version="v1", node=node, protocol="oip_v2", round=n + 1,
                               passed=passed, total=items, items=outcome))
    return out


def _probe(mode: Mode, arms: tuple[Arm, ...], items: int, window: int) -> Probe:
    golden = tuple(Item(f"i{k}", {"inputs": []}, {"equals": 1}) for k in range(items))
    probe = Probe("p", "oip_v2", "m", arms, golden, mode, "baseline" if mode == "arms" else None)
    return _with_window(probe, window)


def _with_window(probe: Probe, window: int) -> Probe:
    return dataclasses.replace(probe, criteria=dataclasses.replace(probe.criteria, window=window))


def false_fails(rounds: int, items: int, window: int, flaky: float, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"rounds": rounds, "items_per_round": items, "window": window, "flaky": flaky,
                           "seed": seed}
    arms = (Arm("baseline", "http://b", "v1"), Arm("canary", "http://c", "v1"))
    nodes = tuple(Arm(f"node-{n}", f"http://node-{n}", node=f"node-{n}") for n in range(8))
    modes: tuple[tuple[Mode, tuple[Arm, ...]], ...] = (("arms", arms), ("nodes", nodes))
    for mode, chosen in modes:
        board = Board([_probe(mode, chosen, items, window)], "bench", time.time)
        series = [healthy_rounds(rng, "p", a.name, rounds, items, flaky, a.node or "") for a in chosen]
        verdicts = {"pass": 0, "marginal": 0, "fail": 0}
        for n in range(rounds):
            board.add([s[n] for s in series])
            for _, arm, judgement in board.judgements:
                if mode == "nodes" or arm == "canary":
                    verdicts[judgement.verdict] += 1
        judged = sum(verdicts.values())
        out[mode] = {"judgements": judged, **verdicts, "false_fail_rate": round(verdicts["fail"] / judged, 4)}
    return out


def _median_us(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e6, 1)


def judge_time(items: int, window: int, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    canary, base = (sample(healthy_rounds(rng, "p", a, window, items, 0.02)) for a in ("canary", "baseline"))
    probe = _probe("arms", (Arm("baseline", "http://b", "v1"), Arm("canary", "http://c", "v1")), items, window)
    board = Board([probe], "bench", time.time)
    rounds = [healthy_rounds(rng, "p", a, window * repeats, items, 0.02) for a in ("baseline", "canary")]
    judging = []  # the board.add calls that complete a window (the others only store the round)
    for n in range(window * repeats):
        start = time.perf_counter()
        board.add([rounds[0][n], rounds[1][n]])
        if (n + 1) % window == 0:
            judging.append(time.perf_counter() - start)
    return {"window": window, "items_per_round": items, "repeats": repeats,
            "judge_us": _median_us(lambda: judge(canary, base, probe.criteria), repeats),
            "board_add_judging_us": round(float(np.median(judging)) * 1e6, 1)}
