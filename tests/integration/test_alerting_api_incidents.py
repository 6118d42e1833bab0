"""The incident API over real HTTP (uvicorn on 127.0.0.1, a real SQLite store, the real engine): alerts in
through the Alertmanager intake, incidents listed by priority and paged, acted on with the actor on
the timeline; silences that mute; receivers' status from a real outbox worker; config, tokens and
approvals."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.outbox import Backoff, OutboxDispatcher
from vigil.alerting.service import build_notifiers
from vigil.alerting.store import Database

from tests.api_fixtures import INTAKE_PATH, Api, am_alert, am_payload, serve_api
from tests.notifier_fixtures import closed_port_url
from vigil.clock import FakeClock

pytestmark = pytest.mark.integration


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with serve_api(tmp_path / "alerts.db") as running:
        yield running


def ingest(api: Api, *alerts: dict[str, Any]) -> dict[str, Any]:
    with api.client("intake", "alertmanager") as client:
        response = client.post(INTAKE_PATH, json=am_payload(*alerts))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def three_incidents(api: Api) -> None:
    ingest(
        api,
        am_alert("GpuXidError", "node-1", gpu_index="3"),
        am_alert("NodeDown", "node-2"),
        am_alert("DiskFull", "node-3", severity="warning"),
    )


def test_intake_opens_incidents_and_records_who_posted(api: Api) -> None:
    answer = ingest(api, am_alert("NodeDown", "node-2"))
    assert answer["incidents"] == [1]
    with api.client("viewer") as viewer:
        incident = viewer.get("/api/v1/incidents/1").json()
        (member,) = incident["members"]
        history = viewer.get(f"/api/v1/alerts/{member['fingerprint']}/history").json()
    stages = history["passes"][0]["stages"]
    assert stages[0] == {
        "stage": "intake",
        "decision": "received",
        "reason": "from Alertmanager, posted with the token of alertmanager",
        "detail": {"actor": "alertmanager"},
    }
    assert member["alert"]["labels"]["alertname"] == "NodeDown" and member["role"] == "member"


def test_incidents_come_by_priority_filtered_and_paged(api: Api) -> None:
    three_incidents(api)
    with api.client("viewer") as viewer:
        everything = viewer.get("/api/v1/incidents").json()["incidents"]
        order = [(i["priority"], i["id"]) for i in everything]
        assert order == sorted(order, reverse=True) and len(order) == 3
        assert everything[0]["domain"] == "node:node-2"  # a node down puts more GPU-hours at risk

        pages, url = [], "/api/v1/incidents?limit=1"
        while url:
            body = viewer.get(url).json()
            pages.append([i["id"] for i in body["incidents"]])
            url = body["next"]
        assert pages == [[i] for _, i in order]

        top = everything[0]["priority"]
        assert [i["id"] for i in viewer.get(f"/api/v1/incidents?min_priority={top}").json()["incidents"]] == [
            everything[0]["id"]
        ]
        nodes = viewer.get("/api/v1/incidents", params={"domain": "node"}).json()["incidents"]
        assert sorted(i["domain"] for i in nodes) == ["node:node-2", "node:node-3"]
        one = viewer.get("/api/v1/incidents", params={"domain": "gpu:node-1/gpu3"}).json()["incidents"]
        assert [i["domain"] for i in one] == ["gpu:node-1/gpu3"]
        warnings = viewer.get("/api/v1/incidents", params={"severity": "warning"}).json()["incidents"]
        assert [i["domain"] for i in warnings] == ["node:node-3"]
        assert viewer.get("/api/v1/incidents", params={"state": "resolved"}).json()["incidents"] == []
        bad = viewer.get("/api/v1/incidents", params={"cursor": "garbage!"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]
        assert viewer.get("/api/v1/incidents", params={"state": "closed"}).status_code == 422


def test_operator_actions_land_on_the_timeline_with_the_actor(api: Api) -> None:
    ingest(api, am_alert("NodeDown", "node-2"))
    with api.client("operator", "olga") as olga:
        acked = olga.post("/api/v1/incidents/1/acknowledge").json()["incident"]
        assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "olga")
        again = olga.post("/api/v1/incidents/1/acknowledge")
        assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
        assert olga.post("/api/v1/incidents/1/assign", json={"assignee": "kim"}).json()["incident"]["assignee"] == "kim"
        olga.post("/api/v1/incidents/1/notes", json={"text": "PSU swapped"}).raise_for_status()
        blank = olga.post("/api/v1/incidents/1/notes", json={"text": "   "})
        assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["body", "text"]
        resolved = olga.post("/api/v1/incidents/1/resolve", json={"note": "fixed"}).json()["incident"]
        assert (resolved["state"], resolved["resolved_by"]) == ("resolved", "olga")
        assert olga.post("/api/v1/incidents/1/reopen").json()["incident"]["state"] == "open"
        assert olga.post("/api/v1/incidents/99/acknowledge").status_code == 404
        timeline = olga.get("/api/v1/incidents/1").json()["timeline"]
    mine = [(e["kind"], e["detail"]) for e in timeline if e["actor"] == "olga"]
    assert mine == [
        ("acknowledged", {}),
        ("assigned", {"assignee": "kim"}),
        ("note", {"text": "PSU swapped"}),
        ("resolved", {"note": "fixed"}),
        ("reopened", {"note": ""}),
    ]


def test_a_silence_mutes_is_expired_and_kept(api: Api) -> None:
    with api.client("operator", "sam") as sam:
        made = sam.post(
            "/api/v1/silences", json={"matchers": ['host=~"node-[45]"'], "duration": "2h", "comment": "rack 7 work"}
        )
        assert made.status_code == 201
        silence = made.json()["silence"]
        assert (silence["state"], silence["created_by"], silence["matchers"]) == (
            "active",
            "sam",
            ['host=~"node-[45]"'],
        )
        ingest(api, am_alert("NodeDown", "node-4"))
        (incident,) = sam.get("/api/v1/incidents").json()["incidents"]
        (member,) = sam.get(f"/api/v1/incidents/{incident['id']}").json()["members"]
        assert member["muted"] == f"silence:{silence['id']}"
        stages = sam.get(f"/api/v1/alerts/{member['fingerprint']}/history").json()["passes"][0]["stages"]
        assert {"stage": "mute", "decision": "mute"}.items() <= next(s for s in stages if s["stage"] == "mute").items()

        expired = sam.post(f"/api/v1/silences/{silence['id']}/expire").json()["silence"]
        assert (expired["state"], expired["expired_by"]) == ("expired", "sam")
        assert sam.post(f"/api/v1/silences/{silence['id']}/expire").status_code == 409
        assert sam.post("/api/v1/silences/nope/expire").status_code == 404
        kept = sam.get("/api/v1/silences", params={"state": "expired"}).json()["silences"]
        assert [s["id"] for s in kept] == [silence["id"]]
        assert sam.get("/api/v1/silences", params={"state": "active"}).json()["silences"] == []
        assert sam.get(f"/api/v1/silences/{silence['id']}").json()["silence"]["expired_by"] == "sam"


def test_receivers_status_shows_pending_last_error_and_held_until(tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    config = {
        "notifiers": [{"type": "webhook", "name": "hook", "url": closed_port_url()}, {"type": "log", "name": "log"}],
        "route": {"receiver": "both", "group_wait": "0s"},
        "receivers": [{"name": "both", "notifiers": ["hook", "log"]}],
    }
    workers: dict[str, Any] = {}
    with serve_api(
        tmp_path / "alerts.db", config, clock, held=lambda: {n: w.held_until for n, w in workers.items()}
    ) as api:
        ingest(api, am_alert("NodeDown", "node-2"))
        api.engine.tick()
        notifiers = build_notifiers(api.engine.config, clock)
        backoff = Backoff(60.0, 600.0, 0, random.Random(1))
        dispatcher = OutboxDispatcher(
            Database.open(tmp_path / "alerts.db"), notifiers, clock, AlertingMetrics(CollectorRegistry()), backoff
        )
        workers.update(dispatcher.workers)
        dispatcher.drain_once()
        with api.client("viewer") as viewer:
            status = {r["name"]: r for r in viewer.get("/api/v1/receivers").json()["receivers"]}
        dispatcher.close()
    hook, log = status["hook"], status["log"]
    assert (hook["type"], hook["receivers"], hook["pending"]) == ("webhook", ["both"], 1)
    assert hook["last_error"] and hook["last_error_state"] == "pending" and hook["last_delivered_at"] is None
    assert hook["held_until"] is not None and hook["held_until"] > hook["oldest_pending_at"]
    assert (log["pending"], log["last_error"], log["held_until"]) == (0, None, None)
    assert log["last_delivered_at"] is not None


def test_config_is_for_admins_with_every_secret_redacted(tmp_path: Path) -> None:
    config = {
        "notifiers": [{"type": "webhook", "name": "hook", "url": "http://127.0.0.1:9/hook?key=WEBHOOKSECRET"}],
        "api": {"admin_token": "ADMINSECRET-0123456789abcdef"},
    }
    with serve_api(tmp_path / "alerts.db", config) as api:
        with api.client("admin") as admin:
            response = admin.get("/api/v1/config")
        with httpx.Client(base_url=api.url, headers={"Authorization": "Bearer ADMINSECRET-0123456789abcdef"}) as root:
            assert root.get("/api/v1/config").status_code == 200  # the config's own admin token works
    body = response.json()
    assert "WEBHOOKSECRET" not in response.text and "ADMINSECRET" not in response.text
    assert body["alerting"]["notifiers"][0]["url"] == "**********"
    assert body["alerting"]["api"]["admin_token"] == "**********"
    assert body["effective_route"]["receiver"] == "default" and body["receivers"]["default"] == ["hook"]


def test_tokens_are_shown_once_and_listed_without_secrets(api: Api) -> None:
    with api.client("admin", "root") as admin:
        made = admin.post("/api/v1/tokens", json={"name": "grafana", "role": "viewer"})
        assert made.status_code == 201
        token = made.json()["token"]
        listed = admin.get("/api/v1/tokens")
        bad_role = admin.post("/api/v1/tokens", json={"name": "x", "role": "root"})
    assert token not in listed.text and token[13:] not in listed.text and "digest" not in listed.text
    entry = next(t for t in listed.json()["tokens"] if t["prefix"] == token[:12])
    assert (entry["name"], entry["role"], entry["created_by"], entry["revoked_at"]) == (
        "grafana",
        "viewer",
        "root",
        None,
    )
    assert bad_role.status_code == 422 and bad_role.json()["detail"][0]["loc"] == ["body", "role"]
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}) as grafana:
        assert grafana.get("/api/v1/incidents").status_code == 200
        assert grafana.post("/api/v1/incidents/1/acknowledge").status_code == 403


@dataclass
class Waiting:
    id: int
    subject: str
    incident_id: int | None = None
    run_id: str = "run-1"
    action: str = "drain_node"
    params: dict[str, Any] = field(default_factory=lambda: {"node": "node-5"})
    why: Sequence[str] = ("destructive step",)
    requested_at: float = 1_767_225_600.0
    expires_at: float | None = None


class Provider:
    """A provider as remediation fills the interface: decisions recorded with their actor."""

    def __init__(self) -> None:
        self.items = {1: Waiting(1, "drain node-5"), 2: Waiting(2, "reset GPU 3 on node-6")}
        self.decided: list[tuple[int, bool, str, str]] = []
        self.lock = threading.Lock()

    def pending(self) -> list[Waiting]:
        return list(self.items.values())

    def approve(self, approval_id: int, actor: str, comment: str = "") -> bool:
        return self._decide(approval_id, True, actor, comment)

    def deny(self, approval_id: int, actor: str, comment: str = "") -> bool:
        return self._decide(approval_id, False, actor, comment)

    def _decide(self, approval_id: int, approve: bool, actor: str, comment: str) -> bool:
        with self.lock:
            if self.items.pop(approval_id, None) is None:
                return False
            self.decided.append((approval_id, approve, actor, comment))
            return True


def test_approvals_are_listed_and_decided_with_the_actor(tmp_path: Path) -> None:
    provider = Provider()
    with serve_api(tmp_path / "alerts.db", approvals=provider) as api, api.client("operator", "pat") as pat:
        listed = pat.get("/api/v1/approvals").json()["approvals"]
        assert [(a["id"], a["subject"], a["params"]) for a in listed] == [
            (1, "drain node-5", {"node": "node-5"}),
            (2, "reset GPU 3 on node-6", {"node": "node-5"}),
        ]
        assert listed[0]["requested_at"] == "2026-01-01T00:00:00+00:00"
        assert pat.post("/api/v1/approvals/1/approve", json={"comment": "go"}).json()["decision"] == "approved"
        assert pat.post("/api/v1/approvals/2/deny").json() == {"id": 2, "decision": "denied", "by": "pat"}
        assert pat.post("/api/v1/approvals/1/approve").status_code == 404  # decided already
    assert provider.decided == [(1, True, "pat", "go"), (2, False, "pat", "")]
