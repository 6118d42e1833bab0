"""The alerting API as the service runs it (engine, token book, page cache, web UI) on a real uvicorn
server on 127.0.0.1 over a real SQLite store, for the API's and the UI's tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from vigil.alerting.api import ApiServer, build_app
from vigil.alerting.approvals import ApprovalsProvider, NoApprovals
from vigil.alerting.auth import TokenBook
from vigil.alerting.config import AlertingConfig
from vigil.alerting.engine import Engine
from vigil.alerting.incident_reader import IncidentReader
from vigil.alerting.routes.context import ApiDeps
from vigil.alerting.store import AlertStore, Database
from vigil.alerting.tokens import Role

from vigil.clock import Clock, SystemClock
from vigil.config import validate

INTAKE_PATH = "/api/v1/intake/alertmanager"


@dataclass
class Api:
    """A running API: its base URL, the engine behind it, and tokens made on demand (one per role)."""

    url: str
    engine: Engine
    store: AlertStore  # the test's own connection (tokens, checks)
    app: Any
    book: TokenBook
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: Role, name: str | None = None) -> str:
        """A token made in the store as ``vigil tokens create`` makes one (the book is told at once,
        as a token made through the API would; ``test_alerting_tokens`` covers the reload on its own)."""
        key = f"{role}:{name or role}"
        if key not in self.tokens:
            self.tokens[key], _ = self.store.create_token(name or f"{role}-user", role, "test", time.time())
            self.book.forget()
        return self.tokens[key]

    def client(self, role: Role | None = None, name: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role, name)}"} if role is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, follow_redirects=False)


@contextmanager
def serve_api(
    db: Path,
    config: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    approvals: ApprovalsProvider | None = None,
    held: Callable[[], Mapping[str, float]] = dict,
) -> Iterator[Api]:
    cfg = validate(AlertingConfig, dict(config or {"notifiers": [{"type": "log"}]}))
    database = Database.open(db)
    store, engine_store = AlertStore(database), AlertStore(database)
    engine = Engine(cfg, engine_store, clock or SystemClock())
    reader = IncidentReader(database)
    book = TokenBook(reader.tokens, AlertStore(database), cfg.api.admin_token)
    deps = ApiDeps(reader, engine, book, CollectorRegistry(), lambda: {"ok": True}, approvals or NoApprovals(), held)
    app = build_app(deps)
    server = ApiServer(app).start()
    try:
        yield Api(f"http://127.0.0.1:{server.port}", engine, store, app, book)
    finally:
        server.stop()
        reader.close()
        book.close()
        engine_store.close()
        store.close()


def am_alert(name: str, host: str, status: str = "firing", severity: str = "critical", **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager's webhook (version 4) carries it."""
    return {
        "status": status,
        "labels": {"alertname": name, "host": host, "severity": severity, **labels},
        "annotations": {"summary": f"{name} on {host}"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "2026-01-01T00:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
    }


def am_payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "vigil", "groupKey": "{}:{}", "alerts": list(alerts)}
