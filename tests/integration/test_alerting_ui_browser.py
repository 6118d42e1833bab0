"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; the Makefile's
set-up installs both, nothing is downloaded) against the app the service runs, on 127.0.0.1.

An operator logs in with a token, acknowledges an incident and sees it acknowledged on its timeline,
creates a silence from matchers and expires it; a viewer sees no action and is refused when it posts
anyway. ``VIGIL_UI_SCREENSHOT=path.png`` keeps the incident page's screenshot (the README's)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.api_fixtures import INTAKE_PATH, Api, am_alert, am_payload, serve_api

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
# STACK.md's flags: no sandbox (root in CI), and nothing that reaches for the internet.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: `make .venv/.installed` installs Debian's chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with serve_api(tmp_path / "alerts.db") as running:
        alerts = (
            am_alert("GpuXidError", "node-1", gpu_index="3", job_id="llm-70b"),
            am_alert("NodeDown", "node-2"),
            am_alert("GpuXidError", "node-2", gpu_index="5"),  # a symptom of the node being down
            am_alert("TelemetryStale", "node-2", severity="warning"),
            am_alert("DiskFull", "node-3", severity="warning"),
        )
        with running.client("intake") as intake:
            intake.post(INTAKE_PATH, json=am_payload(*alerts)).raise_for_status()
        yield running


def log_in(page: Page, api: Api, token: str) -> None:
    page.goto(f"{api.url}/incidents")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Incidents")).to_be_visible()


def incident_id(api: Api, domain: str) -> int:
    with api.client("viewer") as viewer:
        found = viewer.get("/api/v1/incidents", params={"domain": domain}).json()["incidents"]
    return int(found[0]["id"])


def test_an_operator_acknowledges_an_incident_and_silences_alerts(browser: Browser, api: Api, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, api, api.token("operator", "olga"))
    cookie = next(c for c in context.cookies() if c["name"] == "vigil_token")
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token

    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("NodeDown")  # most GPU-hours at risk first
    node = incident_id(api, "node:node-2")
    page.get_by_role("link", name=f"#{node} NodeDown").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"#{node} NodeDown")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("status")).to_have_text("Acknowledged.")
    expect(page.locator("table").first.locator("tbody tr")).to_have_count(3)  # the node's three alerts
    expect(page.locator("#incident-state")).to_have_text("acknowledged")
    acked = page.locator("#timeline tbody tr").filter(has=page.get_by_role("cell", name="acknowledged", exact=True))
    expect(acked.get_by_role("cell", name="olga", exact=True)).to_have_count(1)
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)
    if os.environ.get("VIGIL_UI_SCREENSHOT"):
        shutil.copyfile(tmp_path / "incident.png", os.environ["VIGIL_UI_SCREENSHOT"])
    with api.client("viewer") as viewer:
        stored = viewer.get(f"/api/v1/incidents/{node}").json()["incident"]
    assert (stored["state"], stored["acknowledged_by"]) == ("acknowledged", "olga")

    page.get_by_role("link", name="Silences").click()
    page.get_by_label("Matchers, one a line").fill('host="node-1"\nalertname=~"Gpu.*"')
    page.get_by_label("For").fill("1h")
    page.get_by_label("Why").fill("reseating GPU 3")
    page.get_by_role("button", name="Create silence").click()
    expect(page.get_by_role("status")).to_have_text("Silence created.")
    running = page.locator("#running tbody tr")
    expect(running).to_have_count(1)
    expect(running.first).to_contain_text('host="node-1"')
    expect(running.first).to_contain_text("olga")
    expect(running.first).to_contain_text("active")
    running.first.get_by_role("button", name="Expire").click()
    expect(page.get_by_role("status")).to_have_text("Silence expired.")
    expect(page.locator("#expired tbody tr").first).to_contain_text("expired by olga")
    expect(page.locator("#running tbody tr").first).to_contain_text("None.")
    context.close()


def test_a_viewer_sees_no_action_and_is_refused_when_it_posts_anyway(browser: Browser, api: Api) -> None:
    context = browser.new_context()
    page = context.new_page()
    log_in(page, api, api.token("viewer", "vic"))
    node = incident_id(api, "node:node-2")
    page.goto(f"{api.url}/incidents/{node}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("NodeDown")
    expect(page.get_by_role("heading", name="Actions")).to_have_count(0)
    assert page.locator("main form").count() == 0  # only the header's log-out form posts
    page.goto(f"{api.url}/silences")
    expect(page.get_by_role("button", name="Create silence")).to_have_count(0)

    # The form an operator would see, built by hand and submitted from this page: a real browser post.
    page.goto(f"{api.url}/incidents/{node}")
    with page.expect_response(lambda r: r.url.endswith("/acknowledge")) as answer:
        page.evaluate(
            """id => { const f = document.createElement('form'); f.method = 'post';
                       f.action = `/incidents/${id}/acknowledge`; document.body.append(f); f.submit(); }""",
            node,
        )
    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("viewer role may not do this")
    with api.client("viewer") as viewer:
        assert viewer.get(f"/api/v1/incidents/{node}").json()["incident"]["state"] == "open"
    context.close()


def test_a_wrong_token_stays_on_the_login_page_a_right_one_opens_the_incidents(browser: Browser, api: Api) -> None:
    page = browser.new_page()
    page.goto(f"{api.url}/login")
    page.get_by_label("API token").fill("vgl_00000000_" + "x" * 43)
    with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("That token is unknown or revoked.")
    page.get_by_label("API token").fill(api.token("viewer"))
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Incidents")).to_be_visible()  # not back to the login form
    assert page.url == f"{api.url}/incidents"
    page.close()
