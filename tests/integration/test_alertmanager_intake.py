"""Existing Prometheus rules flow into Vigil's incidents: the real node_exporter, Prometheus and
Alertmanager (Debian's packages, installed by the Makefile's set-up) on loopback, delivering to
the alerting service's ``POST /api/v1/intake/alertmanager``.

A rule fires on a real metric (node_exporter's textfile collector, which the test writes), Prometheus
sends it to Alertmanager, Alertmanager's webhook delivers it to Vigil: an incident opens and is paged.
The metric returns to normal, the rule stops firing, Alertmanager sends the resolve: the incident
resolves. The payload's validation (422 naming the field) is checked against the same service.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from vigil.alerting.config import AlertingConfig
from vigil.alerting.service import AlertingService
from vigil.alerting.store import AlertStore

from vigil.bus.memory import MemoryBus
from vigil.clock import SystemClock
from vigil.config import validate
from vigil.topics import Topics

pytestmark = pytest.mark.integration
T = TypeVar("T")
METRIC = "vigil_test_gpu_temperature_celsius"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], timeout_s: float = 60.0, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def spawn(stack: ExitStack, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        out.close()

    stack.callback(stop)
    return process


def write_metric(folder: Path, value: float) -> None:
    tmp = folder / "gpu.prom.tmp"
    tmp.write_text(f'{METRIC}{{host="node-07",gpu_index="3"}} {value}\n')
    tmp.replace(folder / "gpu.prom")  # node_exporter must never read half a file


@pytest.fixture
def vigil(tmp_path: Path) -> Iterator[AlertingService]:
    config = validate(
        AlertingConfig,
        {"group": "am-intake", "notifiers": [{"type": "log", "name": "pager"}], "api": {"port": 0}},
    )
    svc = AlertingService(MemoryBus(), Topics(), config, SystemClock(), CollectorRegistry(), tmp_path / "alerts.db")
    stop = threading.Event()
    runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    runner.start()
    assert svc.ready.wait(15.0) and svc.api_port
    yield svc
    stop.set()
    runner.join(15.0)


def stack_config(tmp: Path, ports: dict[str, int], intake: str) -> tuple[Path, Path]:
    rules = tmp / "rules.yml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "gpu",
                        "interval": "1s",
                        "rules": [
                            {
                                "alert": "GpuTooHot",
                                "expr": f"{METRIC} > 85",
                                "labels": {"severity": "critical"},
                                "annotations": {"summary": "GPU {{ $labels.gpu_index }} on {{ $labels.host }} is hot"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    prom = tmp / "prometheus.yml"
    prom.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ports['am']}"]}]}]},
                "scrape_configs": [
                    {"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{ports['node']}"]}]}
                ],
            }
        )
    )
    am = tmp / "alertmanager.yml"
    am.write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "vigil",
                    "group_by": ["alertname"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "vigil", "webhook_configs": [{"url": intake, "send_resolved": True}]}],
            }
        )
    )
    return prom, am


def test_a_prometheus_rule_opens_and_resolves_an_incident(tmp_path: Path, vigil: AlertingService) -> None:
    ports = {name: free_port() for name in ("node", "prom", "am")}
    textfiles = tmp_path / "textfiles"
    textfiles.mkdir()
    write_metric(textfiles, 95.0)
    intake = f"http://127.0.0.1:{vigil.api_port}/api/v1/intake/alertmanager"
    prom_config, am_config = stack_config(tmp_path, ports, intake)
    with ExitStack() as stack:
        spawn(
            stack,
            [
                "prometheus-node-exporter",
                f"--web.listen-address=127.0.0.1:{ports['node']}",
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={textfiles}",
            ],
            tmp_path / "node.log",
        )
        spawn(
            stack,
            [
                "prometheus-alertmanager",
                f"--config.file={am_config}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{ports['am']}",
                "--cluster.listen-address=",
            ],
            tmp_path / "am.log",
        )
        spawn(
            stack,
            [
                "prometheus",
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp_path / 'prom'}",
                f"--web.listen-address=127.0.0.1:{ports['prom']}",
                "--rules.alert.resend-delay=1s",
            ],
            tmp_path / "prom.log",
        )
        store = AlertStore(vigil.database)

        def incident(state: str) -> Any:
            return next((i for i in store.incidents(state=state)), None)

        opened = wait_for(lambda: incident("open"), timeout_s=90.0)
        assert opened is not None, (tmp_path / "am.log").read_text()[-2000:]
        assert opened.domain.key == "gpu:node-07/gpu3" and opened.severity == "critical"
        [stored] = store.of_incident(opened.id)
        assert stored.source == "alertmanager" and stored.alert.labels["alertname"] == "GpuTooHot"
        assert stored.generator_url and "/graph?g0.expr=" in stored.generator_url
        assert wait_for(lambda: [r for r in store.outbox() if r.reason == "first"], timeout_s=10.0)

        write_metric(textfiles, 40.0)  # back to normal: the rule stops firing, Alertmanager sends the resolve
        resolved = wait_for(lambda: incident("resolved"), timeout_s=90.0)
        assert resolved is not None and resolved.id == opened.id
        assert store.get(stored.alert.fingerprint).status == "resolved"  # type: ignore[union-attr]
        store.close()


def test_a_malformed_alertmanager_payload_is_a_422_naming_the_field(vigil: AlertingService) -> None:
    url = f"http://127.0.0.1:{vigil.api_port}/api/v1/intake/alertmanager"
    good = {
        "version": "4",
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2026-01-01T00:00:00Z"}],
    }
    assert httpx.post(url, json=good, timeout=10).status_code == 200
    bad = {**good, "alerts": [{"status": "burning", "labels": {"alertname": "X"}, "startsAt": "2026-01-01T00:00:00"}]}
    response = httpx.post(url, json=bad, timeout=10)
    assert response.status_code == 422
    where = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert ("body", "alerts", 0, "status") in where and ("body", "alerts", 0, "startsAt") in where  # naive time
    assert httpx.post(url, json={**good, "version": "3"}, timeout=10).status_code == 422
