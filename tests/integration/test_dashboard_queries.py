"""Every panel query of every committed dashboard returns data from a real Prometheus scraping a short
``vigil up``: the simulated fleet (with an XID 48 on one GPU and a straggler rank), analytics, alerting
and the Influx sink (into a real VictoriaMetrics), plus a node agent (``vigil agent`` beside it, whose
SMART collector is pointed at a disk that does not exist, so it counts errors) and one malformed
telemetry record for the dead-letter panels. Prometheus is Debian's (the Makefile's set-up installs it),
scraping every second.

The template variables are filled from their own queries (``label_values`` through Prometheus' label
API), picking the faulty node and GPU and the job; ``$__rate_interval`` is 1m. No panel is left out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer

from tests.prometheus_server import Prometheus
from vigil.broker import free_port
from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack
from vigil.cli.victoria import VictoriaMetrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# The XID is on a hot spare (node-04: 4 job nodes + 2 spares): a lost GPU of the job would stop the
# simulated job, and with it every training panel's data.
FAULT_HOST, FAULT_GPU, STRAGGLER_RANK = "node-04", 2, 5
# The straggler starts once each rank's own step-time history is learnt (its z against itself counts
# too); the XID alert is kept firing for the test's length (it resolves after a quiet period).
FAULTS = [
    {"kind": "xid48", "at": 2, "duration": 600, "host": FAULT_HOST, "gpu_index": FAULT_GPU},
    {"kind": "straggler", "at": 35, "duration": 600, "rank": STRAGGLER_RANK},
]
PICK = {"cluster": None, "node": FAULT_HOST, "gpu": str(FAULT_GPU), "job": "job-0"}
LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>\w+)\)$")
DEADLINE_S = 180.0  # polling, once the stack and Prometheus are up (a loaded machine fires the straggler later)


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    data = tmp_path_factory.mktemp("dash")
    with VictoriaMetrics(data / "vm") as store:
        settings = {
            "data_dir": str(data / "vigil"),
            "sim": {"nodes": 4, "gpus_per_node": 4, "faults": FAULTS},
            "analytics": {"health": {"lag_every": "1s"}, "xid": {"quiet_period": "10m"}},
            "alerting": {"health": {"lag_every": "1s"}},
            "sink": {"influx": {"enabled": True, "url": store.url}},
        }
        stack = Stack(VigilConfig.model_validate(settings), ephemeral=True).start()
        agent: subprocess.Popen[bytes] | None = None
        try:
            poison(stack)
            targets = {name: f"127.0.0.1:{port}" for name, port in stack.health_ports.items()}
            agent, targets["agent"] = start_agent(stack, data / "agent")
            with Prometheus(data / "prometheus", targets) as prom:
                yield prom
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(30)
            stack.stop()


def start_agent(stack: Stack, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``vigil agent`` on the stack's broker: a counter, and SMART on a disk that does not exist (errors)."""
    assert stack.broker is not None
    folder.mkdir()
    port = free_port()
    config = {
        "data_dir": str(folder),
        "kafka": {"bootstrap_servers": [stack.broker.bootstrap]},
        "agent": {
            "host": "dash-agent",
            "tick": "500ms",
            "collectors": {
                "counter": {"module": "tests.agent_collectors", "interval": "1s"},
                "smart": {"interval": "2s", "devices": ["/dev/vigil-no-such-disk"]},
            },
        },
    }
    (folder / "agent.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "vigil.cli", "agent", "-c", str(folder / "agent.yaml"), "--metrics-port", str(port)]
    with open(folder / "agent.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, f"127.0.0.1:{port}"


def poison(stack: Stack) -> None:
    """One record no codec reads, on the telemetry topic: analytics and the sink dead-letter it."""
    assert stack.broker is not None
    producer = KafkaProducer(bootstrap_servers=[stack.broker.bootstrap])
    producer.send(stack.config.topics().name("telemetry"), b"\x00not a telemetry batch", key=b"node-00")
    producer.flush(30)
    producer.close(10)


def variable_values(prom: Prometheus, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each query variable's value: its query run like Grafana runs it, the wanted value picked from it."""
    chosen = {"__rate_interval": "1m"}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        found = LABEL_VALUES.match(var["query"]["query"])
        assert found, f"{var['name']}: not a label_values() query"
        values = prom.label_values(found["label"], fill(found["match"], chosen))
        wanted = PICK[var["name"]]
        if not values or (wanted is not None and wanted not in values):
            return {}  # not scraped yet
        chosen[var["name"]] = wanted if wanted is not None else values[0]
    return chosen


def fill(expr: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):  # $__rate_interval before $r...
        expr = expr.replace(f"${name}", values[name])
    assert "$" not in expr.replace("$datasource", ""), f"unfilled variable in {expr}"
    return expr


def panel_queries(dashboards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, dashboard in dashboards.items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield name, panel["title"], {"dashboard": dashboard, "expr": target["expr"]}


def empty_queries(prom: Prometheus, dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """The queries (dashboard, panel, PromQL filled in) that return no series yet."""
    values = {name: variable_values(prom, d) for name, d in dashboards.items()}
    empty = []
    for name, title, q in panel_queries(dashboards):
        if not values[name] and q["dashboard"]["templating"]["list"][1:]:
            empty.append(f"{name} / variables not answerable yet")
            continue
        expr = fill(q["expr"], values[name] or {"__rate_interval": "1m"})
        if not prom.query(expr):
            empty.append(f"{name} / {title}: {expr}")
    return empty


def test_every_panel_query_of_every_dashboard_returns_data(prometheus: Prometheus) -> None:
    dashboards = committed()
    assert len(dashboards) == 6
    queries = list(panel_queries(dashboards))
    assert len(queries) > 60  # every target of every panel, not a sample of them
    deadline = time.monotonic() + DEADLINE_S
    empty = empty_queries(prometheus, dashboards)
    while empty and time.monotonic() < deadline:
        time.sleep(3.0)
        empty = empty_queries(prometheus, dashboards)
    assert not empty, "queries without data:\n" + "\n".join(empty)
    render = os.environ.get("VIGIL_RENDER_PANELS")
    if render:  # the README's picture, from this very run (tests/render_panels.py says how)
        from tests.render_panels import render_panels

        render_panels(prometheus, Path(render))


def test_the_variables_pick_the_faulty_gpu_and_the_job(prometheus: Prometheus) -> None:
    node = committed()["node.json"]
    deadline = time.monotonic() + DEADLINE_S
    values = variable_values(prometheus, node)
    while not values and time.monotonic() < deadline:
        time.sleep(2.0)
        values = variable_values(prometheus, node)
    assert values["node"] == FAULT_HOST and values["gpu"] == str(FAULT_GPU)
    gpus = prometheus.label_values("gpu_index", f'vigil_gpu_temperature_celsius{{host="{FAULT_HOST}"}}')
    assert sorted(gpus) == ["0", "1", "2", "3"]
