"""Acceptance against a REAL Open Inference Protocol v2 server (Seldon MLServer, from the serving venv):
digits v1 (good) serves; v2 (deliberately degraded: always the most frequent class) is rolled out;
the canary judges v2 fail within 10 rounds; alerting opens an incident naming the version and the
failing items with their answers; the canary-model-rollback runbook rolls MLServer back through its
model repository (v2's folder out, unload, load); the round the remediation starts, and the rounds
after it, pass, and the alert resolves. ``vigil alerting`` and ``vigil canary`` run as processes on the
embedded broker, as ``vigil up`` runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_digits

from tests.canary_servers import Recorder
from tests.model_servers import MLServer, mlserver, train_digits
from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.codec import decode
from vigil.config import KafkaConfig
from vigil.errors import InvalidEvent
from vigil.events import Detection, ProbeResult, RemediationRun
from vigil.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def golden(path: Path) -> None:
    """The first image of each digit, labelled: v1 (trained on all of digits) gets every one right."""
    x, y = load_digits(return_X_y=True)
    items = []
    for digit in range(10):
        row = int((y == digit).nonzero()[0][0])
        tensor = {"name": "predict", "datatype": "FP64", "shape": [1, 64], "data": x[row].tolist()}
        items.append({"id": f"digit-{digit}", "inputs": [tensor], "expect": {"equals": digit}})
    path.write_text(yaml.safe_dump({"items": items}))


class Watch:
    """Everything on the probes, detections and remediation topics, read as it arrives."""

    def __init__(self, bus: KafkaBus, topics: Topics, group: str) -> None:
        self.events: list[Any] = []
        self._stop = threading.Event()
        names = [topics.name("probes"), topics.detections, topics.name("remediation")]
        self._consumer = bus.consumer(names, group)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for record in self._consumer.poll(0.3):
                try:
                    self.events.append(decode(record.value))
                except InvalidEvent:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def results(self, arm: str) -> list[ProbeResult]:
        return [e for e in list(self.events) if isinstance(e, ProbeResult) and e.target == f"digits@{arm}"]

    def detections(self) -> list[Detection]:
        return [e for e in list(self.events) if isinstance(e, Detection)]

    def runs(self) -> list[RemediationRun]:
        return [e for e in list(self.events) if isinstance(e, RemediationRun)]


def wait(what: str, predicate: Callable[[], object], timeout: float, logs: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@contextmanager
def service(name: str, config: Path, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (logs / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vigil.cli", name, "-c", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def write_config(tmp_path: Path, broker: EmbeddedBroker, ml: MLServer, hook: str, unique: str) -> Path:
    probe = {"probes": [{
        "name": "digits", "protocol": "oip_v2", "endpoint": ml.url, "model": "digits", "server": "digits-ml",
        "arms": [{"name": "v1", "version": "v1"}, {"name": "serving"}], "baseline": "v1",
        "schedule": {"interval": "500ms", "timeout": "10s"}, "criteria": {"window": 5},
        "golden": "digits.golden.yaml",
    }]}
    (tmp_path / "digits.yaml").write_text(yaml.safe_dump(probe))
    golden(tmp_path / "digits.golden.yaml")
    config = {
        "cluster": "test", "data_dir": str(tmp_path / "data"), "log_level": "info",
        "kafka": {"bootstrap_servers": [broker.bootstrap], "topics": {"prefix": f"t{unique}"}},
        "alerting": {
            "group": f"a{unique}",
            "api": {"enabled": False},
            "notifiers": [{"type": "webhook", "url": hook}, {"type": "remediation"}],
            # the incident's resolve is batched into the group's next interval (default 5 minutes)
            "route": {"receiver": "default", "group_interval": "1s"},
            "remediation": {
                "enabled": True, "mode": "execute", "verify": {"watch": False},
                "serving": {"servers": {"digits-ml": {
                    "url": ml.url, "repository": str(ml.repository), "retired": str(tmp_path / "retired")}}},
            },
        },
        "canary": {"probes": [str(tmp_path / "digits.yaml")], "group": f"c{unique}"},
    }
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_degraded_version_is_failed_paged_rolled_back_and_the_next_rounds_pass(
    broker: EmbeddedBroker, tmp_path: Path, unique: str
) -> None:
    root, logs = tmp_path / "mlserver", tmp_path / "logs"
    logs.mkdir()
    train_digits(root / "models", v1="good")
    train_digits(tmp_path / "staged", v2="degraded")
    bus = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap]))
    topics = Topics(f"t{unique}")
    bus.create_topics({t.name: 1 for t in topics.all()})
    with mlserver(root) as ml, Recorder() as hook:
        config = write_config(tmp_path, broker, ml, hook.url, unique)
        watch = Watch(bus, topics, f"w{unique}")
        try:
            with service("alerting", config, logs), service("canary", config, logs):
                _rollout_and_rollback(ml, watch, hook, logs, tmp_path)
        finally:
            watch.close()


def _rollout_and_rollback(ml: MLServer, watch: Watch, hook: Recorder, logs: Path, tmp_path: Path) -> None:
    wait("v1 serving and passing", lambda: len([r for r in watch.results("serving") if r.ok]) >= 3, 120, logs)
    assert all(r.version == "v1" for r in watch.results("serving"))

    ml.deploy(tmp_path / "staged", "v2")
    firing = wait("the canary to fail v2", lambda: [d for d in watch.detections()
                  if d.decision == "firing" and d.labels.get("model_version") == "v2"], 60, logs)[0]
    v2_rounds = [r for r in watch.results("serving") if r.version == "v2" and r.ts <= firing.ts]
    assert 1 <= len(v2_rounds) <= 10, f"judged after {len(v2_rounds)} rounds of v2"
    assert all(not r.ok and r.quality is not None and r.quality <= 0.2 for r in v2_rounds)
    assert firing.labels["server"] == "digits-ml" and firing.labels["canary"] == "version"
    assert "v2" in firing.summary and "digit-0 answered '3'" in firing.summary

    page = wait("the incident's page", lambda: [b for b in hook.bodies if b.get("action") == "trigger"], 60, logs)[0]
    assert "model digits v2" in page["summary"] and "failing items: digit-0 answered '3'" in page["summary"]

    wait("the rollback run to succeed", lambda: [r for r in watch.runs() if r.state == "succeeded"], 60, logs)
    assert not (ml.repository / "digits" / "v2").exists()
    assert [p.name.split("-")[0] for p in (tmp_path / "retired" / "digits").iterdir()] == ["v2"]
    assert [(r["version"], r["state"]) for r in ml.index()] == [("v1", "READY")]

    after = wait("the round the remediation started", lambda: [r for r in watch.results("serving")
                 if r.trigger == "remediation"], 30, logs)[0]
    assert after.ok and after.version == "v1"
    wait("five passing rounds after the rollback", lambda: len([r for r in watch.results("serving")
         if r.ts >= after.ts and r.ok and r.version == "v1"]) >= 5, 60, logs)
    assert all(r.ok for r in watch.results("serving") if r.ts >= after.ts)
    resolved = wait("the v2 alert to resolve", lambda: [d for d in watch.detections()
                    if d.decision == "resolved" and d.labels.get("model_version") == "v2"], 60, logs)[0]
    assert "no longer answers" in resolved.summary
    wait("the resolve to reach the pager", lambda: [b for b in hook.bodies if b.get("action") == "resolve"], 60, logs)
