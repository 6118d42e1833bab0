"""A short ``vigil up`` stack of the 8 x 8-GPU fleet on the real broker: scrape analytics',
alerting's, the simulator's and the canary's /metrics, check every family against the catalog
(name, type, labels), the series budget and Prometheus' own lint (``promtool check metrics``,
Debian's prometheus package, which the Makefile's set-up installs), and ``vigil status --json``
against the running stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack
from vigil.metrics_catalog import Family, families

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERIES_BUDGET = 5000
Wanted = Callable[[Sample], bool] | None
# On a hot spare (a lost GPU of the job would stop it and its step series), and long enough to still
# fire when a slow start (the whole suite on 2 cores) first scrapes.
FAULTS = [{"kind": "xid48", "at": 3, "duration": 900, "host": "node-08", "gpu_index": 5}]
HEALTH = {"lag_every": "1s"}  # measure the lag soon after the first commits


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("scrape")
    settings = {
        "data_dir": str(data),
        "sim": {"nodes": 8, "gpus_per_node": 8, "faults": FAULTS},
        "analytics": {"health": HEALTH},
        "alerting": {"health": HEALTH},
    }
    (data / "vigil.yaml").write_text(yaml.safe_dump(settings))
    running = Stack(VigilConfig.model_validate(settings), ephemeral=True).start()
    try:
        yield running
    finally:
        running.stop()


def scrape(stack: Stack, service: str) -> str:
    return httpx.get(f"http://127.0.0.1:{stack.health_ports[service]}/metrics", timeout=5).text


def wait_for(stack: Stack, service: str, needed: set[str], timeout_s: float = 120.0, also: Wanted = None) -> str:
    """The service's /metrics once it shows a sample of every family in ``needed`` and one ``also`` accepts."""
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while time.monotonic() < deadline:
        try:
            text = scrape(stack, service)
        except httpx.HTTPError:
            text = ""
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        seen = {s.name for s in samples}
        if needed <= seen and (also is None or any(also(s) for s in samples)):
            return text
        time.sleep(1.0)
    raise AssertionError(f"{service} never showed {sorted(needed - seen)} (or what ``also`` waits for)")


def xid48_firing(s: Sample) -> bool:
    """The fault injected on node-08 GPU 5 shows as a firing entity."""
    wanted = {"alertname": "GpuXidFatal", "host": "node-08", "gpu_index": "5"}
    return s.name == "vigil_detection_firing" and s.value == 1.0 and wanted.items() <= s.labels.items()


def catalog_entry(name: str, kind: str) -> Family:
    """The catalog family a parsed family is (the parser drops a counter's ``_total``)."""
    entry = families().get(name + "_total" if kind == "counter" else name)
    assert entry is not None, f"{name} ({kind}) is exported but not in vigil.metrics_catalog"
    return entry


def check_against_catalog(text: str) -> int:
    """Every family is in the catalog with its type and labels; returns the number of series."""
    series = 0
    for family in text_string_to_metric_families(text):
        entry = catalog_entry(family.name, family.type)
        assert family.type == entry.kind, family.name
        assert family.documentation == entry.help, family.name
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            assert labels == set(entry.labels), f"{sample.name}: labels {sorted(labels)}, catalog {entry.labels}"
            series += 1
    return series


def promtool_lint(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package (Makefile set-up)"
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"promtool check metrics:\n{done.stdout}{done.stderr}"


ANALYTICS_NEEDED = {
    "vigil_gpu_temperature_celsius",
    "vigil_host_load1",
    "vigil_telemetry_last_timestamp_seconds",
    "vigil_detection_firing",
    "vigil_detection_delay_seconds_count",
    "vigil_training_step",
    "vigil_training_hung",
    "vigil_consumer_lag_records",
    "vigil_consumer_last_poll_timestamp_seconds",
    "vigil_analytics_snapshot_age_seconds",
}
ALERTING_NEEDED = {"vigil_alerts_firing", "vigil_outbox_pending", "vigil_consumer_lag_records"}


def test_analytics_metrics_follow_the_catalog_within_the_series_budget(stack: Stack) -> None:
    text = wait_for(stack, "analytics", ANALYTICS_NEEDED, also=xid48_firing)
    series = check_against_catalog(text)
    assert series < SERIES_BUDGET, f"analytics exports {series} series for 8 x 8 GPUs"
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    temps = parsed["vigil_gpu_temperature_celsius"].samples
    assert len({(s.labels["host"], s.labels["gpu_index"]) for s in temps}) == 80  # 8 nodes and 2 hot spares
    assert all(20.0 < s.value < 110.0 for s in temps)
    firing = [s for s in parsed["vigil_detection_firing"].samples if s.value == 1.0]
    assert any(s.labels["host"] == "node-08" and s.labels["gpu_index"] == "5" for s in firing), firing
    ranks = {s.labels["rank"] for s in parsed["vigil_training_step"].samples}
    assert len(ranks) == 64
    lags = parsed["vigil_consumer_lag_records"].samples
    assert {s.labels["group"] for s in lags} == {"vigil-analytics"} and all(s.value >= 0 for s in lags)
    promtool_lint(text)
    print(f"analytics: {series} series")  # the figure, for the record (pytest -s)


def test_alerting_metrics_follow_the_catalog(stack: Stack) -> None:
    text = wait_for(stack, "alerting", ALERTING_NEEDED)
    series = check_against_catalog(text)
    assert series < SERIES_BUDGET
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["severity"] for s in parsed["vigil_alerts_firing"].samples} >= {"critical", "warning", "info"}
    notifiers = {s.labels["notifier"] for s in parsed["vigil_outbox_pending"].samples}
    # the configured log notifier, vigil up's measuring webhook and its remediation receiver (dry run)
    assert notifiers == {"log", "vigil-up-pager", "vigil-up-remediation"}
    promtool_lint(text)
    print(f"alerting: {series} series")


def test_the_simulator_s_metrics_follow_the_catalog(stack: Stack) -> None:
    text = wait_for(stack, "sim", {"vigil_bus_up"})
    assert 0 < check_against_catalog(text) < 50
    promtool_lint(text)


CANARY_NEEDED = {
    "vigil_canary_rounds_total",
    "vigil_canary_pass_ratio",
    "vigil_canary_item_latency_seconds_count",
    "vigil_canary_results_pending",
}


def test_the_canary_s_metrics_follow_the_catalog(stack: Stack) -> None:
    """The canary that ``vigil up`` runs on its simulated serving model: rounds, pass ratio per model
    version and latency, as the catalog defines them."""
    text = wait_for(stack, "canary", CANARY_NEEDED)
    assert 0 < check_against_catalog(text) < 500
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    ratios = parsed["vigil_canary_pass_ratio"].samples
    assert {s.labels["probe"] for s in ratios} == {"sim-classifier"} and all(s.labels["version"] for s in ratios)
    promtool_lint(text)


def test_vigil_status_json_shows_every_service_of_the_running_stack(stack: Stack) -> None:
    wait_for(stack, "analytics", {"vigil_consumer_lag_records"})
    config = stack.config.data_dir / "vigil.yaml"
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "status", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    services = {s["name"]: s for s in json.loads(done.stdout)["services"]}
    assert set(services) == {"alerting", "analytics", "broker", "canary", "sim"}
    assert all(s["ok"] and s["restarts"] == 0 for s in services.values())
    analytics = services["analytics"]
    assert analytics["reachable"] and analytics["status"] == 200 and analytics["lag"] is not None
    assert 1 <= analytics["partitions"] <= 16  # those with a committed offset, of telemetry 8 + logs 4 + training 4
    assert 0 <= analytics["last_poll_age_s"] < 30
    assert services["alerting"]["url"] == f"http://127.0.0.1:{stack.health_ports['alerting']}"
    table = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "status", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0 and "analytics" in table.stdout and "ok" in table.stdout


def test_the_alerting_api_logs_its_url(stack: Stack) -> None:
    wait_for(stack, "alerting", {"vigil_alerts_firing"})
    log = (stack.config.data_dir / "logs" / "alerting.log").read_text()
    assert f"alerting API on http://127.0.0.1:{stack.health_ports['alerting']}" in log
