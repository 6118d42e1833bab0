"""The role matrix: every route of the API and the web UI x no token / intake / viewer / operator / admin,
over real HTTP against the app the service runs (uvicorn on 127.0.0.1, a real SQLite store).

The table is checked against the app's own routes in both directions, so a new endpoint without an
entry here fails ``test_every_route_has_a_matrix_entry`` before it can ship unguarded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vigil.alerting.auth import route_needs
from vigil.alerting.tokens import ROLES, Need, allows

from tests.api_fixtures import INTAKE_PATH, Api, am_alert, am_payload, serve_api

pytestmark = pytest.mark.integration

FP = "0" * 16
SILENCE = {"matchers": ['alertname="GpuXidError"'], "comment": "matrix", "duration": "1h"}
SILENCE_FORM = {"matchers": 'alertname="GpuXidError"', "comment": "matrix", "duration": "1h"}
# (method, route path) -> (what it needs, None = public; the path to call; JSON body; form body)
Entry = tuple[Need | None, str, dict[str, Any] | None, dict[str, str] | None]
MATRIX: dict[tuple[str, str], Entry] = {
    ("GET", "/healthz"): (None, "/healthz", None, None),
    ("GET", "/metrics"): (None, "/metrics", None, None),
    ("GET", "/docs"): (None, "/docs", None, None),
    ("GET", "/docs/oauth2-redirect"): (None, "/docs/oauth2-redirect", None, None),
    ("GET", "/redoc"): (None, "/redoc", None, None),
    ("GET", "/openapi.json"): (None, "/openapi.json", None, None),
    ("GET", "/login"): (None, "/login", None, None),
    ("POST", "/login"): (None, "/login", None, {"token": "<viewer>", "next": "/incidents"}),
    ("POST", "/logout"): (None, "/logout", None, None),
    # API: read
    ("GET", "/api/v1/alerts"): ("viewer", "/api/v1/alerts", None, None),
    ("GET", "/api/v1/alerts/{fingerprint}"): ("viewer", f"/api/v1/alerts/{FP}", None, None),
    ("GET", "/api/v1/alerts/{fingerprint}/history"): ("viewer", f"/api/v1/alerts/{FP}/history", None, None),
    ("GET", "/api/v1/incidents"): ("viewer", "/api/v1/incidents", None, None),
    ("GET", "/api/v1/incidents/{incident_id}"): ("viewer", "/api/v1/incidents/1", None, None),
    ("GET", "/api/v1/silences"): ("viewer", "/api/v1/silences", None, None),
    ("GET", "/api/v1/silences/{silence_id}"): ("viewer", "/api/v1/silences/none", None, None),
    ("GET", "/api/v1/receivers"): ("viewer", "/api/v1/receivers", None, None),
    ("GET", "/api/v1/approvals"): ("viewer", "/api/v1/approvals", None, None),
    # API: act
    ("POST", INTAKE_PATH): ("intake", INTAKE_PATH, am_payload(am_alert("GpuXidError", "node-1")), None),
    ("POST", "/api/v1/incidents/{incident_id}/acknowledge"): (
        "operator",
        "/api/v1/incidents/1/acknowledge",
        None,
        None,
    ),
    ("POST", "/api/v1/incidents/{incident_id}/resolve"): ("operator", "/api/v1/incidents/1/resolve", {}, None),
    ("POST", "/api/v1/incidents/{incident_id}/reopen"): ("operator", "/api/v1/incidents/1/reopen", {}, None),
    ("POST", "/api/v1/incidents/{incident_id}/assign"): (
        "operator",
        "/api/v1/incidents/1/assign",
        {"assignee": "kim"},
        None,
    ),
    ("POST", "/api/v1/incidents/{incident_id}/notes"): ("operator", "/api/v1/incidents/1/notes", {"text": "hi"}, None),
    ("POST", "/api/v1/silences"): ("operator", "/api/v1/silences", SILENCE, None),
    ("POST", "/api/v1/silences/{silence_id}/expire"): ("operator", "/api/v1/silences/none/expire", None, None),
    ("POST", "/api/v1/approvals/{approval_id}/approve"): ("operator", "/api/v1/approvals/1/approve", None, None),
    ("POST", "/api/v1/approvals/{approval_id}/deny"): ("operator", "/api/v1/approvals/1/deny", None, None),
    # API: admin
    ("GET", "/api/v1/config"): ("admin", "/api/v1/config", None, None),
    ("GET", "/api/v1/tokens"): ("admin", "/api/v1/tokens", None, None),
    ("POST", "/api/v1/tokens"): ("admin", "/api/v1/tokens", {"name": "matrix", "role": "viewer"}, None),
    ("POST", "/api/v1/tokens/{prefix}/revoke"): ("admin", "/api/v1/tokens/vgl_00000000/revoke", None, None),
    # web UI
    ("GET", "/"): ("viewer", "/", None, None),
    ("GET", "/incidents"): ("viewer", "/incidents", None, None),
    ("GET", "/incidents/{incident_id}"): ("viewer", "/incidents/1", None, None),
    ("POST", "/incidents/{incident_id}/{action}"): ("operator", "/incidents/1/note", None, {"note": "from the UI"}),
    ("GET", "/silences"): ("viewer", "/silences", None, None),
    ("POST", "/silences"): ("operator", "/silences", None, SILENCE_FORM),
    ("POST", "/silences/{silence_id}/expire"): ("operator", "/silences/none/expire", None, {}),
    ("GET", "/approvals"): ("viewer", "/approvals", None, None),
    ("POST", "/approvals/{approval_id}/{decision}"): ("operator", "/approvals/1/approve", None, {}),
    ("GET", "/receivers"): ("viewer", "/receivers", None, None),
}
CALLERS = [None, *ROLES]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with serve_api(tmp_path_factory.mktemp("roles") / "alerts.db") as running:
        with running.client("operator") as client:  # incident 1 exists, so the actions reach the engine
            client.post(INTAKE_PATH, json=am_payload(am_alert("GpuXidError", "node-1"))).raise_for_status()
        yield running


def call(api: Api, caller: str | None, method: str, entry: Entry) -> httpx.Response:
    """One request; a form is posted as a browser posts it, with this site's Origin."""
    _, path, body, form = entry
    headers = {"Origin": api.url} if form is not None else {}
    if form is not None and form.get("token") == "<viewer>":
        form = {**form, "token": api.token("viewer")}
    with api.client(caller) as client:  # type: ignore[arg-type]
        return client.request(method, path, json=body, data=form, headers=headers)


def test_every_route_has_a_matrix_entry(api: Api) -> None:
    routes = {(m, r.path) for r in api.app.routes for m in getattr(r, "methods", set()) - {"HEAD"}}
    assert routes - set(MATRIX) == set(), "routes without a role-matrix entry"
    assert set(MATRIX) - routes == set(), "matrix entries for routes that no longer exist"
    declared = route_needs(api.app.routes)
    assert {k: v[0] for k, v in MATRIX.items()} == declared  # what each route declares is what the table says


@pytest.mark.parametrize("caller", CALLERS, ids=[c or "no-token" for c in CALLERS])
def test_role_matrix(api: Api, caller: str | None) -> None:
    wrong = []
    for (method, route), entry in MATRIX.items():
        need = entry[0]
        response = call(api, caller, method, entry)
        if need is None:
            expected = "served"
        elif caller is None:
            expected = "401"
        else:
            expected = "served" if allows(caller, need) else "403"  # type: ignore[arg-type]
        got = str(response.status_code) if response.status_code in (401, 403) else "served"
        if response.status_code >= 500:
            got = f"error {response.status_code}"
        if got != expected:
            wrong.append(f"{method} {route}: expected {expected}, got {response.status_code} {response.text[:120]}")
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer", route
    assert not wrong, "\n".join(wrong)


def test_a_revoked_or_forged_token_is_401(api: Api) -> None:
    with api.client("admin") as admin:
        made = admin.post("/api/v1/tokens", json={"name": "short-lived", "role": "viewer"}).json()
        token = made["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert admin.get("/api/v1/incidents", headers=headers).status_code == 200
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")  # right prefix, wrong secret
        assert admin.get("/api/v1/incidents", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert admin.post(f"/api/v1/tokens/{made['prefix']}/revoke").status_code == 200
        assert admin.get("/api/v1/incidents", headers=headers).status_code == 401  # at once, in this process
        assert admin.post(f"/api/v1/tokens/{made['prefix']}/revoke").status_code == 409


def test_the_body_is_judged_only_after_the_token(api: Api) -> None:
    """FastAPI parses a body before dependencies run: the middleware answers 401/403 first."""
    garbage = {"content": b"{not json", "headers": {"content-type": "application/json"}}
    with api.client() as anonymous, api.client("viewer") as viewer, api.client("operator") as operator:
        assert anonymous.post("/api/v1/silences", **garbage).status_code == 401  # type: ignore[arg-type]
        assert viewer.post("/api/v1/silences", **garbage).status_code == 403  # type: ignore[arg-type]
        assert operator.post("/api/v1/silences", **garbage).status_code == 422  # type: ignore[arg-type]
        missing = operator.post("/api/v1/incidents/1/assign", json={}).json()["detail"]
        assert [e["loc"] for e in missing] == [["body", "assignee"]]
        extra = operator.post("/api/v1/silences", json={**SILENCE, "comentt": "typo"}).json()["detail"]
        assert ["body", "comentt"] in [e["loc"] for e in extra]
        bad = operator.post("/api/v1/silences", json={**SILENCE, "matchers": ["host~node-1"]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "matchers"]
        unmatchable = operator.post("/api/v1/silences", json={**SILENCE, "matchers": ['host=~".*"']})
        assert unmatchable.status_code == 422 and unmatchable.json()["detail"][0]["loc"] == ["body", "matchers"]


def test_a_cookie_write_must_come_from_this_site(api: Api) -> None:
    """The UI's cookie authorises a form post only with this server's Origin (or Referer)."""
    cookies = {"vigil_token": api.token("operator")}
    with httpx.Client(base_url=api.url, cookies=cookies, timeout=10.0) as browser:
        assert browser.get("/incidents").status_code == 200  # reading needs no origin
        form = {"note": "csrf?"}
        foreign = browser.post("/incidents/1/note", data=form, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "cross-site" in foreign.text
        assert browser.post("/incidents/1/note", data=form).status_code == 403  # neither Origin nor Referer
        host = api.url.removeprefix("http://")
        own = browser.post("/incidents/1/note", data=form, headers={"Origin": f"http://{host}"})
        assert own.status_code == 303 and own.headers["location"] == "/incidents/1?done=note"
        referred = browser.post("/incidents/1/note", data=form, headers={"Referer": f"http://{host}/incidents/1"})
        assert referred.status_code == 303


def test_unknown_paths_are_404_not_401(api: Api) -> None:
    with api.client() as anonymous:
        assert anonymous.get("/api/v1/nothing-here").status_code == 404


def test_docs_and_openapi_describe_bearer_auth(api: Api, tmp_path: Path) -> None:
    with api.client() as anonymous:
        spec = anonymous.get("/openapi.json").json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert spec["paths"]["/api/v1/incidents"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "/incidents" not in spec["paths"]  # the UI's pages are not API
