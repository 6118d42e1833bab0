"""Remediation through the REAL ``vigil alerting`` process on the embedded broker, in execute mode, with
observable side effects at recording HTTP servers (the webhook actions):

- ``kill -9`` of the alerting process between two steps of a plan, then a restart: the plan resumes
  and no step runs twice. Step 2 is destructive (an RMA ticket) and waits for an approval the test
  gives, through the restarted process's approvals API, only after the kill;
- a route sends only the matching incidents to the remediation receiver; a maintenance window and a
  silence on a node stop the robot there (it never hears of the incident).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from vigil.alerting.matchers import parse_matcher
from vigil.alerting.store import AlertStore

from tests.notifier_fixtures import Answer, ContractServer, Seen
from vigil.broker import EmbeddedBroker, free_port
from vigil.bus.kafka import KafkaBus
from vigil.codec import encode
from vigil.config import KafkaConfig
from vigil.events import Detection
from vigil.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T = TypeVar("T")

RUNBOOK = {
    "name": "two-step",
    "description": "a webhook, then an RMA ticket a person approves",
    "match": ['alertname="GpuBoardFailing"'],
    "steps": [
        {"name": "tell", "action": "webhook", "params": {"node": "{host}", "note": "incident {incident}"}},
        {
            "name": "ticket",
            "action": "rma.open",
            "params": {"node": "{host}", "reason": "vigil incident {incident}"},
            "guards": {"approval": "required"},
        },
    ],
    "on_failure": "escalate",
}


def wait_for(check: Callable[[], T], what: str, timeout_s: float = 90.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def no_check(seen: Seen) -> list[str]:
    return [] if seen.headers.get("Idempotency-Key") else ["no Idempotency-Key"]


class Rig:
    """The config, the recording servers, and the ``vigil alerting`` process (started, killed, restarted)."""

    def __init__(self, tmp: Path, broker: EmbeddedBroker, prefix: str, stack: ExitStack, **alerting: Any) -> None:
        self.tmp, self.stack, self.api_port = tmp, stack, free_port()
        self.hook = stack.enter_context(ContractServer(no_check, Answer(200), path="/hook").running())
        self.rma = stack.enter_context(ContractServer(no_check, Answer(201), path="/rma").running())
        runbooks = tmp / "runbooks"
        runbooks.mkdir()
        (runbooks / "two-step.yaml").write_text(yaml.safe_dump(RUNBOOK))
        remediation = {
            "enabled": True,
            "mode": "execute",
            "runbooks_dir": str(runbooks),
            "hooks": {"webhook_url": self.hook.url, "rma_url": self.rma.url},
            "guards": {"blast_radius": {"cluster_nodes": 4, "max_fraction": 1.0}},
            "verify": {"watch": False},
            "interval": 0.2,
        }
        self.kafka = {"bootstrap_servers": [broker.bootstrap], "topics": {"prefix": prefix}}
        config = {
            "data_dir": str(tmp / "data"),
            "kafka": self.kafka,
            "alerting": {
                "api": {"port": self.api_port},
                "notifiers": [{"type": "log", "name": "pager"}, {"type": "remediation", "name": "robot"}],
                "remediation": remediation,
                **alerting,
            },
        }
        self.config = tmp / "vigil.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.db = tmp / "data" / "alerting" / "alerts.db"
        self.topics = Topics(prefix)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        stack.callback(self.stop)

    def start(self) -> None:
        self.starts += 1
        log = (self.tmp / f"alerting-{self.starts}.log").open("wb")
        self.stack.callback(log.close)
        argv = [sys.executable, "-m", "vigil.cli", "alerting", "-c", str(self.config)]
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.healthy, "the alerting API to answer")

    def healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.logs()
        try:
            return httpx.get(f"{self.api}/healthz", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown code runs
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("alerting-*.log")))

    def detect(self, alertname: str, host: str) -> None:
        labels = {"alertname": alertname, "cluster": "dc1", "host": host, "gpu_index": "2"}
        now = time.time()
        series = f'{alertname}{{host="{host}"}}'
        event = Detection(
            now, "test", series, labels, 9.0, "firing", "critical", {}, now, now, f"{alertname} on {host}"
        )
        producer = KafkaBus(KafkaConfig(bootstrap_servers=self.kafka["bootstrap_servers"])).producer()
        producer.send(self.topics.detections, encode(event), key=host.encode())
        producer.flush()
        producer.close()

    def store(self) -> AlertStore:
        store = AlertStore(self.db)
        self.stack.callback(store.close)
        return store


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def test_kill_9_between_two_steps_resumes_the_plan_and_repeats_no_step(
    tmp_path: Path, broker: EmbeddedBroker, unique: str, stack: ExitStack
) -> None:
    rig = Rig(tmp_path, broker, f"kill{unique}", stack, route={"receiver": "default", "group_wait": "0s"})
    rig.start()
    rig.detect("GpuBoardFailing", "node-3")
    store = rig.store()

    def waiting() -> Any:
        runs = store.runs()
        return runs and runs[0].state == "waiting_approval" and runs[0]

    run = wait_for(waiting, "step 1 done and step 2 waiting for its approval\n" + rig.logs())
    steps = store.steps(run.id)
    assert [(s.name, s.state) for s in steps] == [("tell", "succeeded"), ("ticket", "pending")]
    assert len(rig.hook.seen) == 1 and not rig.rma.seen

    rig.kill9()  # between step 1 (done) and step 2 (not started)
    rig.start()
    pending = wait_for(lambda: httpx.get(f"{rig.api}/api/v1/approvals").json()["approvals"], "the approval listed")
    assert [(p["action"], p["run_id"]) for p in pending] == [("rma.open", run.id)]
    decided = httpx.post(f"{rig.api}/api/v1/approvals/{pending[0]['id']}/approve", json={"actor": "alice"})
    assert decided.status_code == 200, decided.text
    again = httpx.post(f"{rig.api}/api/v1/approvals/{pending[0]['id']}/approve", json={"actor": "bob"})
    assert again.status_code == 409  # decided already

    done = wait_for(lambda: (r := store.run(run.id)) is not None and r.state == "succeeded", "the run to finish")
    assert done
    # Each step's effect exactly once across both processes: one webhook call, one RMA ticket.
    assert [s.headers["Idempotency-Key"] for s in rig.hook.seen] == [f"{run.id}/steps/0"]
    assert [s.headers["Idempotency-Key"] for s in rig.rma.seen] == [f"{run.id}/steps/1"]
    assert [(s.state, s.attempts) for s in store.steps(run.id)] == [("succeeded", 1), ("succeeded", 1)]
    kinds = [r.kind for r in store.audit_rows()]
    assert kinds.count("action") == 2 and kinds.count("approval_requested") == 1 and "approved" in kinds
    assert (
        subprocess.run(  # the chain and its head agree after a kill -9 and a restart
            [sys.executable, "-m", "vigil.cli", "audit", "verify", "-c", str(rig.config)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def test_only_routed_incidents_reach_the_robot_and_a_maintenance_window_or_silence_stops_it(
    tmp_path: Path, broker: EmbeddedBroker, unique: str, stack: ExitStack
) -> None:
    route = {
        "receiver": "people",
        "group_wait": "0s",
        "routes": [{"matchers": ['alertname="GpuBoardFailing"'], "receiver": "robot-and-people"}],
    }
    receivers = [
        {"name": "people", "notifiers": ["pager"]},
        {"name": "robot-and-people", "notifiers": ["robot", "pager"]},
    ]
    maintenance = [
        {
            "name": "rack-work",
            "matchers": ['host="node-8"'],
            "start": "2020-01-01T00:00:00Z",
            "end": "2099-01-01T00:00:00Z",
        }
    ]
    rig = Rig(tmp_path, broker, f"route{unique}", stack, route=route, receivers=receivers, maintenance=maintenance)
    rig.start()
    store = rig.store()
    now = time.time()
    store.save_silence(
        _silence([parse_matcher('host="node-9"')], now - 60, now + 3600)  # an operator's silence on node-9
    )
    rig.detect("GpuBoardFailing", "node-5")  # routed to the robot: a run
    rig.detect("GpuOverTemperature", "node-6")  # routed to people only: no run
    rig.detect("GpuBoardFailing", "node-8")  # under maintenance: muted, no run
    rig.detect("GpuBoardFailing", "node-9")  # silenced: muted, no run

    def by_host() -> dict[str, Any]:
        return {s.alert.labels["host"]: s for s in store.firing()}

    hosts = {"node-5", "node-6", "node-8", "node-9"}
    wait_for(lambda: set(by_host()) == hosts and store.runs(), "the four alerts stored and a run made\n" + rig.logs())
    time.sleep(2.0)  # the outbox has had time to deliver anything else it would (it delivers within 0.5 s)
    assert [r.labels["host"] for r in store.runs()] == ["node-5"]
    stored = by_host()
    assert stored["node-8"].muted and "maintenance" in stored["node-8"].muted
    assert stored["node-9"].muted and "silence" in stored["node-9"].muted
    assert stored["node-5"].muted is None and stored["node-6"].muted is None
    robot = [r for r in store.notification_log() if r["notifier"] == "robot"]
    assert {r["incident_id"] for r in robot} == {store.runs()[0].incident_id}


def _silence(matchers: list[Any], starts: float, ends: float) -> Any:
    from vigil.alerting.silences import new_silence

    return new_silence(matchers, starts, ends, "ops", "node-9 is being repaired", time.time())
