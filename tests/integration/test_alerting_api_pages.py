"""The paginated alerts API, served by uvicorn on 127.0.0.1 over a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vigil.alerting.api import DEFAULT_LIMIT, MAX_LIMIT
from vigil.alerting.store import AlertStore

from tests.api_fixtures import serve_api
from vigil.events import Alert

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0


def alert(i: int, status: str = "firing", updated_at: float | None = None) -> Alert:
    return Alert(
        fingerprint=f"{i:016x}",
        status="firing" if status == "firing" else "resolved",
        labels={"alertname": "GpuOverheating", "host": f"node-{i:03d}"},
        annotations={"summary": f"alert {i}"},
        starts_at=T0,
        ends_at=None if status == "firing" else T0 + 60,
        severity="critical",
        updated_at=T0 + i if updated_at is None else updated_at,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    opened = AlertStore(tmp_path / "alerts.db")
    yield opened
    opened.close()


@pytest.fixture
def client(store: AlertStore, tmp_path: Path) -> Iterator[httpx.Client]:
    with serve_api(tmp_path / "alerts.db") as api, api.client("viewer") as http:
        yield http


def put(store: AlertStore, *alerts: Alert) -> None:
    with store.transaction():
        for a in alerts:
            store.upsert(a)


def walk(client: httpx.Client, url: str) -> list[list[str]]:
    """Follow ``next`` from ``url`` to the last page; the hosts on each page."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url is not None:
        body: dict[str, Any] = client.get(next_url).raise_for_status().json()
        pages.append([a["labels"]["host"] for a in body["alerts"]])
        next_url = body["next"]
        assert (next_url is None) == (body["next_cursor"] is None)
    return pages


def test_pages_follow_next_newest_first_without_gaps_or_repeats(client: httpx.Client, store: AlertStore) -> None:
    # 5, 6 and 7 share one updated_at: the fingerprint breaks the tie, so no page boundary splits them badly
    put(store, *(alert(i, updated_at=T0 + 5 if i in (5, 6, 7) else None) for i in range(23)))
    pages = walk(client, "/api/v1/alerts?limit=5")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    hosts = [h for p in pages for h in p]
    expected = sorted(range(23), key=lambda i: (T0 + 5 if i in (5, 6, 7) else T0 + i, i), reverse=True)
    assert hosts == [f"node-{i:03d}" for i in expected]


def test_the_status_filter_is_kept_across_pages(client: httpx.Client, store: AlertStore) -> None:
    put(store, *(alert(i, "resolved" if i % 3 == 0 else "firing") for i in range(30)))
    first = client.get("/api/v1/alerts", params={"status": "resolved", "limit": 4}).json()
    assert "status=resolved" in first["next"] and "limit=4" in first["next"]
    pages = walk(client, "/api/v1/alerts?status=resolved&limit=4")
    hosts = [h for p in pages for h in p]
    assert hosts == [f"node-{i:03d}" for i in range(27, -1, -3)]
    firing = [h for p in walk(client, "/api/v1/alerts?status=firing&limit=7") for h in p]
    assert len(firing) == 20 and not set(firing) & set(hosts)


def test_default_and_maximum_limit(client: httpx.Client, store: AlertStore) -> None:
    put(store, *(alert(i) for i in range(DEFAULT_LIMIT + 3)))
    body = client.get("/api/v1/alerts").json()
    assert len(body["alerts"]) == DEFAULT_LIMIT and body["next_cursor"]
    assert len(client.get("/api/v1/alerts", params={"limit": MAX_LIMIT}).json()["alerts"]) == DEFAULT_LIMIT + 3
    for bad in (0, MAX_LIMIT + 1):
        response = client.get("/api/v1/alerts", params={"limit": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("cursor", ["garbage!", "bm90LWEtY3Vyc29y", "MS4wfFpaWg"])  # "not-a-cursor", "1.0|ZZZ"
def test_a_cursor_the_api_did_not_issue_is_a_422_naming_it(client: httpx.Client, cursor: str) -> None:
    response = client.get("/api/v1/alerts", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_the_cursor_is_stable_while_alerts_arrive_and_pages_see_every_change(
    client: httpx.Client, store: AlertStore
) -> None:
    put(store, *(alert(i) for i in range(10)))
    first = client.get("/api/v1/alerts", params={"limit": 4}).json()
    assert [a["labels"]["host"] for a in first["alerts"]] == ["node-009", "node-008", "node-007", "node-006"]
    put(store, alert(10), alert(11))  # new alerts land at the top: the next page does not shift
    second = client.get(first["next"]).json()
    assert [a["labels"]["host"] for a in second["alerts"]] == ["node-005", "node-004", "node-003", "node-002"]

    again = client.get("/api/v1/alerts", params={"limit": 4}).json()  # the same query, after a write
    assert [a["labels"]["host"] for a in again["alerts"]][:2] == ["node-011", "node-010"]
    put(store, alert(11, "resolved", updated_at=T0 + 11))  # a change without a new updated_at
    resolved = client.get("/api/v1/alerts", params={"limit": 4}).json()
    assert resolved["alerts"][0]["status"] == "resolved"
    store.mark_published({f"{11:016x}": 2})
    assert store.prune_resolved(T0 + 100, 10) == 1
    after_prune = client.get("/api/v1/alerts", params={"limit": 4}).json()
    assert after_prune["alerts"][0]["labels"]["host"] == "node-010"
