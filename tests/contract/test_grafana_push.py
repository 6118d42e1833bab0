"""Contract test of ``vigil dashboards push`` (grafana-client) against a local HTTP server that plays
Grafana's HTTP API as documented (no Grafana server can run here): ``GET /api/frontend/settings``,
``GET /api/folders/:uid``, ``POST /api/folders``, ``GET /api/datasources/uid/:uid``,
``POST /api/datasources``, ``PUT /api/datasources/uid/:uid`` and ``POST /api/dashboards/db``, every
request with ``Authorization: Bearer <token>`` and JSON bodies, each posted dashboard validated against
the JSON Schema of Grafana's dashboard."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from vigil.broker import free_port
from vigil.cli.app import build_app

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "grafana" / "dashboard.schema.json").read_text())
TOKEN = "glsa_vigil_test_token"
UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
DASHBOARD_BODY = {"dashboard", "folderUid", "folderId", "overwrite", "message"}
DATASOURCE_REQUIRED = {"name", "type", "access", "url"}


@dataclass
class FakeGrafana:
    """What the server holds and every request it was sent (method, path, body)."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # contract violations the handler saw

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        if method == "GET" and path == "/api/frontend/settings":
            return 200, {"buildInfo": {"version": "11.3.0", "commit": "test", "env": "production"}}
        if method == "GET" and path.startswith("/api/folders/"):
            found = self.folders.get(path.removeprefix("/api/folders/"))
            return (200, found) if found else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            return self.create_folder(body)
        if method == "GET" and path.startswith("/api/datasources/uid/"):
            source = self.datasources.get(path.removeprefix("/api/datasources/uid/"))
            return (200, source) if source else (404, {"message": "Data source not found"})
        if method == "POST" and path == "/api/datasources":
            return self.save_datasource(body, None)
        if method == "PUT" and path.startswith("/api/datasources/uid/"):
            return self.save_datasource(body, path.removeprefix("/api/datasources/uid/"))
        if method == "POST" and path == "/api/dashboards/db":
            return self.save_dashboard(body)
        self.problems.append(f"unexpected {method} {path}")
        return 404, {"message": "Not found"}

    def create_folder(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("title"), str) or not UID.match(body.get("uid", "")):
            self.problems.append(f"POST /api/folders with {body}")
            return 400, {"message": "bad request data"}
        if body["uid"] in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {"id": len(self.folders) + 1, "uid": body["uid"], "title": body["title"], "version": 1}
        self.folders[body["uid"]] = {**folder, "url": f"/dashboards/f/{body['uid']}/"}
        return 200, self.folders[body["uid"]]

    def save_datasource(self, body: dict[str, Any], uid: str | None) -> tuple[int, Any]:
        """POST adds (409 on a name or uid taken), PUT updates the one of ``uid`` (404 if none)."""
        if DATASOURCE_REQUIRED - set(body) or body["access"] not in ("proxy", "direct"):
            self.problems.append(f"data source body {body}")
            return 400, {"message": "bad request data"}
        if uid is None:
            taken = any(d["name"] == body["name"] or d["uid"] == body.get("uid") for d in self.datasources.values())
            if taken:
                return 409, {"message": "data source with the same name already exists"}
            uid = body.get("uid") or f"ds{len(self.datasources)}"
            message = "Datasource added"
        elif uid not in self.datasources:
            return 404, {"message": "Data source not found"}
        else:
            message = "Datasource updated"
        self.datasources[uid] = {**body, "uid": uid}
        return 200, {"datasource": self.datasources[uid], "id": 1, "message": message, "name": body["name"]}

    def save_dashboard(self, body: dict[str, Any]) -> tuple[int, Any]:
        dashboard = body.get("dashboard", {})
        errors = [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(dashboard)]
        if set(body) - DASHBOARD_BODY or errors or not UID.match(dashboard.get("uid", "")):
            self.problems.append(f"POST /api/dashboards/db: keys {sorted(body)}, schema {errors[:3]}")
            return 400, {"message": "bad request data"}
        if body.get("folderUid") not in self.folders:
            return 400, {"message": "folder not found"}
        old = self.dashboards.get(dashboard["uid"])
        if old and not body.get("overwrite"):
            return 412, {"status": "version-mismatch", "message": "The dashboard has been changed by someone else"}
        version = old["version"] + 1 if old else 1
        self.dashboards[dashboard["uid"]] = {"version": version, "folderUid": body["folderUid"], "dashboard": dashboard}
        slug = re.sub(r"[^a-z0-9]+", "-", dashboard["title"].lower()).strip("-")
        url = f"/d/{dashboard['uid']}/{slug}"
        return 200, {
            "id": 1,
            "uid": dashboard["uid"],
            "url": url,
            "status": "success",
            "version": version,
            "slug": slug,
        }


def handler_for(grafana: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self, method: str) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Unauthorized"})
            body = None
            if method in ("POST", "PUT"):
                if self.headers.get_content_type() != "application/json":
                    grafana.problems.append(f"{method} {self.path}: content type {self.headers.get_content_type()}")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, answer = grafana.answer(method, self.path.split("?")[0], body)
            self._send(status, answer)

        def _send(self, status: int, answer: Any) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()
    state.datasources["vm"] = {"uid": "vm", "name": "VictoriaMetrics", "type": "prometheus"}
    state.datasources["logs"] = {"uid": "logs", "name": "Loki", "type": "loki"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def push(url: str, *args: str, token: str = TOKEN) -> Any:
    result = CliRunner().invoke(build_app(), ["dashboards", "push", "--url", url, "--token", token, *args])
    return result


def posts(grafana: FakeGrafana, path: str) -> list[Any]:
    return [body for method, p, body in grafana.requests if method == "POST" and p == path]


def test_push_creates_the_folder_and_posts_every_dashboard_with_overwrite(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    result = push(url, "--json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["version"] == "11.3.0" and done["folder"] == {"uid": "vigil", "created": True}
    assert posts(state, "/api/folders") == [{"title": "Vigil", "uid": "vigil"}]
    bodies = posts(state, "/api/dashboards/db")
    assert len(bodies) == 6 and all(b["overwrite"] is True and b["folderUid"] == "vigil" for b in bodies)
    assert all(b["dashboard"]["id"] is None for b in bodies)
    assert {d["uid"] for d in done["dashboards"]} == set(state.dashboards) and len(state.dashboards) == 6
    assert [d["version"] for d in done["dashboards"]] == [1] * 6
    assert state.requests[0][:2] == ("GET", "/api/frontend/settings")
    assert not state.problems, state.problems


def test_a_second_push_creates_nothing_and_overwrites(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    assert push(url).exit_code == 0
    again = push(url, "--json")
    assert again.exit_code == 0, again.output
    done = json.loads(again.stdout)
    assert done["folder"] == {"uid": "vigil", "created": False}
    assert len(posts(state, "/api/folders")) == 1 and len(state.folders) == 1
    assert len(state.dashboards) == 6 and [d["version"] for d in done["dashboards"]] == [2] * 6
    assert not state.problems, state.problems


def test_the_folder_option_and_a_datasource_the_dashboards_default_to(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    result = push(url, "--folder", "GPU fleet / Vigil", "--datasource-uid", "vm")
    assert result.exit_code == 0, result.output
    assert posts(state, "/api/folders") == [{"title": "GPU fleet / Vigil", "uid": "gpu-fleet-vigil"}]
    for saved in state.dashboards.values():
        (source,) = [v for v in saved["dashboard"]["templating"]["list"] if v["name"] == "datasource"]
        assert source["current"] == {"text": "vm", "value": "vm"}
        assert saved["folderUid"] == "gpu-fleet-vigil"
    assert not state.problems, state.problems


def test_an_unknown_or_non_prometheus_datasource_is_refused_before_anything_is_posted(
    grafana: tuple[FakeGrafana, str],
) -> None:
    state, url = grafana
    missing = push(url, "--datasource-uid", "nope")
    assert missing.exit_code == 1 and "Grafana has no data source 'nope'" in missing.output
    loki = push(url, "--datasource-uid", "logs")
    assert loki.exit_code == 1 and "'logs' is a loki data source, not Prometheus" in loki.output
    assert not posts(state, "/api/folders") and not posts(state, "/api/dashboards/db")


def test_a_wrong_token_or_no_grafana_is_one_clear_line(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    denied = push(url, token="wrong")
    assert denied.exit_code == 1 and f"Grafana at {url} answered 401" in denied.output
    assert not state.dashboards
    nobody = push(f"http://127.0.0.1:{free_port()}")
    assert nobody.exit_code == 1 and "did not answer" in nobody.output


def test_push_of_a_folder_of_json(grafana: tuple[FakeGrafana, str], tmp_path: Path) -> None:
    state, url = grafana
    fleet = json.loads((ROOT / "dashboards" / "fleet.json").read_text())
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    result = push(url, "--data", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert list(state.dashboards) == ["vigil-fleet"]
    empty = push(url, "--data", str(tmp_path / "none"))
    assert empty.exit_code == 1 and "no dashboard JSON" in empty.output


def test_push_creates_the_prometheus_datasource_or_updates_its_url(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    first = push(url, "--prometheus-url", "http://prometheus:9090", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["datasource"] == {"uid": "vigil-prometheus", "made": "created"}
    made = state.datasources["vigil-prometheus"]
    assert (made["type"], made["url"], made["access"]) == ("prometheus", "http://prometheus:9090", "proxy")
    for saved in state.dashboards.values():
        (source,) = [v for v in saved["dashboard"]["templating"]["list"] if v["name"] == "datasource"]
        assert source["current"]["value"] == "vigil-prometheus"
    again = push(url, "--prometheus-url", "http://prometheus:9090", "--json")
    assert json.loads(again.stdout)["datasource"]["made"] == "unchanged"
    moved = push(url, "--prometheus-url", "http://victoria:8428", "--json")
    assert json.loads(moved.stdout)["datasource"]["made"] == "updated"
    assert state.datasources["vigil-prometheus"]["url"] == "http://victoria:8428"
    assert len(posts(state, "/api/datasources")) == 1 and len(state.datasources) == 3
    loki = push(url, "--prometheus-url", "http://prometheus:9090", "--datasource-uid", "logs")
    assert loki.exit_code == 1 and "'logs' is a loki data source" in loki.output
    assert not state.problems, state.problems
