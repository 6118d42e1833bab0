"""``vigil bench remediation``: how fast the robot plans a storm, and how soon it acts, as figures.

- **storm** (the pure planner): ``--incidents`` XID incidents (79, 48 and 13 in turn, one per node of
  a ``--nodes`` cluster, jobs of 8 nodes) go through ``choose_runbook`` and ``plan`` with the shipped
  runbooks, XID policy and every action kind, each plan seeing the steps the plans before it would
  take (so the blast-radius breaker works as in a real storm). The figure is plans per wall second
  over the whole storm (best of ``--repeats``); the verdicts and how many nodes the breaker let the
  robot touch are printed with it. Nothing is stored: this is the planner alone.
- **first action** (the real service): the alerting service (``AlertingService`` over the in-memory
  bus, so the broker's cost is left out; a SQLite store in a temporary folder) in execute mode, with
  a runbook whose first step is a webhook to a recording HTTP server on loopback. ``--live``
  detections are sent one after the other; for each, the seconds from queueing the detection to its
  webhook call arriving (intake, incident, route, outbox, remediation receiver, plan, runner,
  action). Printed: each, their median and their maximum.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import typer
import yaml

from vigil.cli.bench import bench_app, machine
from vigil.cli.common import JsonOption, show
from vigil.cli.extras import require
from vigil.clock import SystemClock

XIDS = ("79", "48", "13")
LIVE_RUNBOOK = {
    "name": "bench-first-action",
    "description": "one webhook call: the bench's observable first action",
    "match": ['alertname="BenchGpuFault"'],
    "steps": [{"name": "tell", "action": "webhook", "params": {"node": "{host}", "incident": "{incident}"}}],
    "on_failure": "stop",
}


def storm(incidents: int, nodes: int, repeats: int) -> dict[str, Any]:
    from vigil.alerting.runbooks.actions.build import catalog_actions
    from vigil.alerting.runbooks.config import BlastRadiusConfig, GuardsConfig
    from vigil.alerting.runbooks.loader import load_dir
    from vigil.alerting.runbooks.model import Plan, Subject
    from vigil.alerting.runbooks.planner import Acted, State, choose_runbook, plan
    from vigil.alerting.runbooks.policy import XidPolicy

    actions = catalog_actions()
    runbooks = load_dir(None, actions)
    policy = XidPolicy.load(known=runbooks)
    guards = GuardsConfig(blast_radius=BlastRadiusConfig(cluster_nodes=nodes))
    subjects = [
        Subject(
            f"incident-{i}",
            {
                "alertname": "GpuXidFatal",
                "xid": XIDS[i % 3],
                "host": f"node-{i % nodes:05d}",
                "gpu_index": str(i % 8),
                "job_id": str(i % nodes // 8),
                "incident": str(i),
            },
        )
        for i in range(incidents)
    ]
    best, plans = float("inf"), list[Plan]()
    for _ in range(repeats):
        state, plans = State(time.time(), nodes), []
        start = time.perf_counter()
        for subject in subjects:
            runbook, why = choose_runbook(subject, runbooks, policy, {})
            if runbook is None:
                continue
            made = plan(subject, runbook, state, actions, guards, f"run-{subject.key}", why, "execute")
            plans.append(made)
            job = subject.labels.get("job_id")
            acted = [Acted(st.action, st.target, job, state.now, made.run_id) for st in _would_run(made)]
            if acted:
                state = State(state.now, state.cluster_nodes, (*state.recent, *acted), state.approvals)
        best = min(best, time.perf_counter() - start)
    touched = {st.target for p in plans for st in _would_run(p)}
    return {
        "incidents": incidents,
        "cluster_nodes": nodes,
        "plans": len(plans),
        "seconds": round(best, 4),
        "plans_per_s": round(len(plans) / best) if best > 0 else None,
        "verdicts": dict(Counter(p.verdict for p in plans)),
        "nodes_acted_on": len(touched),
        "blast_radius_limit": max(1, int(nodes * guards.blast_radius.max_fraction)),
    }


def _would_run(made: Any) -> list[Any]:
    """The steps an executor would run now: those of the ``steps`` phase before the first one that stops
    (an approval, a block), that change a node."""
    out = []
    for step in made.steps:
        if step.phase != "steps" or step.verdict in ("approval", "blocked"):
            break
        if step.verdict == "go" and step.target is not None:
            out.append(step)
    return out


class Recorder:
    """A loopback HTTP server that notes when each webhook call arrives (monotonic seconds, by incident)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.event = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                recorder.arrived.setdefault(str(body.get("params", {}).get("node", "")), time.monotonic())
                recorder.event.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def first_action(live: int, work: Path) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from vigil.alerting.config import AlertingConfig
    from vigil.alerting.service import AlertingService
    from vigil.bus.memory import MemoryBus
    from vigil.cli.bench_alerting import detection
    from vigil.codec import encode
    from vigil.config import validate
    from vigil.topics import Topics

    (work / "runbooks").mkdir()
    (work / "runbooks" / "bench.yaml").write_text(yaml.safe_dump(LIVE_RUNBOOK))
    latencies: list[float] = []
    with Recorder() as recorder:
        remediation = {
            "enabled": True,
            "mode": "execute",
            "runbooks_dir": str(work / "runbooks"),
            "interval": 0.05,
            "hooks": {"webhook_url": recorder.url},
            "verify": {"watch": False},
            "guards": {"blast_radius": {"cluster_nodes": live, "max_fraction": 1.0}},
        }
        config = {
            "notifiers": [{"type": "remediation", "name": "robot"}],
            "api": {"enabled": False},
            "route": {"receiver": "default", "group_wait": "0s"},
            "dispatch_interval": "0.05s",
            "remediation": remediation,
        }
        cfg = validate(AlertingConfig, config, "alerting")
        bus = MemoryBus()
        svc = AlertingService(bus, Topics(), cfg, SystemClock(), CollectorRegistry(), work / "alerts.db")
        stop = threading.Event()
        runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
        runner.start()
        svc.ready.wait(30)
        producer = bus.producer()
        try:
            for i in range(live):
                host = f"node-{i:03d}"
                queued = time.monotonic()
                event = detection("BenchGpuFault", {"cluster": "dc1", "host": host, "gpu_index": "0"}, time.time())
                producer.send(Topics().detections, encode(event), key=host.encode())
                deadline = queued + 60
                while host not in recorder.arrived and time.monotonic() < deadline:
                    recorder.event.wait(0.01)
                    recorder.event.clear()
                if host in recorder.arrived:
                    latencies.append(recorder.arrived[host] - queued)
        finally:
            stop.set()
            runner.join(30)
    return {
        "incidents": live,
        "acted": len(latencies),
        "first_action_s": [round(x, 3) for x in latencies],
        "first_action_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "first_action_max_s": round(max(latencies), 3) if latencies else None,
    }


@bench_app.command("remediation")
def remediation_bench(
    json_out: bool = JsonOption,
    incidents: int = typer.Option(1000, min=1, help="incidents in the planner's storm"),
    nodes: int = typer.Option(2048, min=1, help="nodes in the cluster the storm hits"),
    repeats: int = typer.Option(3, min=1, help="storm repeats (the best is reported)"),
    live: int = typer.Option(10, min=1, help="incidents sent through the real service, one after the other"),
) -> None:
    """Plans per second for an incident storm (pure planner) and incident-to-first-action time (real service)."""
    require("bench remediation", "server")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-remediation-") as tmp:
        acted = first_action(live, Path(tmp))
    planned = storm(incidents, nodes, repeats)
    result = {
        "plans_per_s": planned["plans_per_s"],
        "first_action_p50_s": acted["first_action_p50_s"],
        "storm": planned,
        "first_action": acted,
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # other work on the machine meanwhile
    }
    show(result, json_out)
