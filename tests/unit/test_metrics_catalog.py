"""The metric catalog is the one place metrics are defined: no code builds one elsewhere, no entry is
unused, every entry follows Prometheus' naming rules, and the README lists every family."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from vigil import catalog
from vigil.metrics_catalog import FAMILIES, counter, families, gauge, gauge_family, histogram, telemetry_families

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("vigil", "collectors", "analytics", "alerting")
CATALOG = ROOT / "vigil" / "metrics_catalog.py"
# Everything in prometheus-client that makes a metric or a metric family.
MAKERS = {
    "Counter",
    "Gauge",
    "Histogram",
    "Summary",
    "Info",
    "Enum",
    "Metric",
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "HistogramMetricFamily",
    "SummaryMetricFamily",
    "InfoMetricFamily",
    "StateSetMetricFamily",
    "GaugeHistogramMetricFamily",
    "UnknownMetricFamily",
}
NAME = re.compile(r"^vigil_[a-z][a-z0-9_]*[a-z0-9]$")
LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
# promtool's lint: base units only, no abbreviations.
NOT_BASE_UNITS = re.compile(
    r"_(milli|micro|nano|kilo|mega|giga)?(ms|us|ns|sec|secs|msec|kb|mb|gb|percent|minutes|hours|days)(_|$)"
)


def source_files() -> list[Path]:
    return sorted(p for d in SOURCES for p in (ROOT / d).rglob("*.py"))


def metric_makers(tree: ast.AST) -> list[str]:
    """``Counter(...)``-style calls of prometheus-client's metric classes, however imported."""
    local: dict[str, str] = {}  # name in this module -> prometheus-client class
    modules: set[str] = set()  # names bound to prometheus_client (or a submodule)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prometheus_client"):
            local.update({a.asname or a.name: a.name for a in node.names if a.name in MAKERS})
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name.startswith("prometheus_client"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in local:
            found.append(f"line {node.lineno}: {local[func.id]}(...)")
        elif isinstance(func, ast.Attribute) and func.attr in MAKERS:
            base = func.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"line {node.lineno}: {func.attr}(...)")
    return found


def test_the_maker_check_finds_what_it_must() -> None:
    code = (
        "from prometheus_client import Counter as C\nimport prometheus_client.core as pc\nimport prometheus_client\n"
        "C('x', 'y')\npc.GaugeMetricFamily('a', 'b')\nprometheus_client.metrics.Histogram('h', 'h')\n"
        "from prometheus_client.core import Metric\ndef f(m: Metric) -> None: ...\n"
    )
    assert metric_makers(ast.parse(code)) == [
        "line 4: Counter(...)",
        "line 5: GaugeMetricFamily(...)",
        "line 6: Histogram(...)",
    ]


def test_no_code_makes_a_metric_outside_the_catalog() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in source_files()
        if path != CATALOG and (found := metric_makers(ast.parse(path.read_text(), str(path))))
    }
    assert not offenders, f"metrics made outside vigil/metrics_catalog.py (use its factory): {offenders}"


def string_constants(tree: ast.AST) -> set[str]:
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_every_catalog_entry_is_used() -> None:
    used: set[str] = set()
    for path in source_files():
        if path != CATALOG:
            used |= string_constants(ast.parse(path.read_text(), str(path)))
    unused = [f.name for f in FAMILIES if f.name not in used]
    assert not unused, f"catalog entries no code creates (remove them, or create them): {unused}"


def test_telemetry_mirrors_follow_the_telemetry_catalog() -> None:
    mirrored = {metric: f for metric, f in telemetry_families()}
    assert set(mirrored) == set(catalog.METRICS)  # every entry there is a GPU, host or training metric
    assert mirrored["gpu_temperature_celsius"].name == "vigil_gpu_temperature_celsius"
    assert mirrored["gpu_temperature_celsius"].labels == ("cluster", "host", "gpu_index")
    assert mirrored["gpu_ecc_dbe_volatile_total"].kind == "counter"
    assert mirrored["host_load1"].labels == ("cluster", "host")
    assert mirrored["training_loss"].labels == ("cluster", "job_id", "rank")


def test_names_are_unique() -> None:
    names = [f.name for f in FAMILIES] + [f.name for _, f in telemetry_families()]
    assert len(names) == len(set(names)) == len(families())


@pytest.mark.parametrize("family", list(families().values()), ids=lambda f: f.name)
def test_prometheus_naming_rules(family: object) -> None:
    from vigil.metrics_catalog import Family

    assert isinstance(family, Family)
    name = family.name
    assert NAME.match(name), f"{name}: not vigil_ + snake_case"
    assert "__" not in name
    assert not NOT_BASE_UNITS.search(name), f"{name}: use base units (seconds, bytes, ratio), unabbreviated"
    if family.kind == "counter":
        assert name.endswith("_total")
    else:
        assert not name.endswith(("_total", "_count", "_sum", "_bucket", "_created"))
    assert family.help.strip() and "\n" not in family.help
    assert all(LABEL.match(label) and label not in ("le", "quantile") for label in family.labels)
    assert len(set(family.labels)) == len(family.labels)
    if family.kind == "histogram":
        assert family.buckets and all(math.isfinite(b) for b in family.buckets)
        assert list(family.buckets) == sorted(set(family.buckets))
    else:
        assert not family.buckets


def test_the_factory_builds_from_the_catalog_and_refuses_the_rest() -> None:
    registry = CollectorRegistry()
    counter(registry, "vigil_dead_letter_records_total").labels("t", "invalid_event").inc()
    gauge(registry, "vigil_bus_up").set(1)
    histogram(registry, "vigil_detection_delay_seconds").labels("zscore").observe(3.0)
    assert registry.get_sample_value("vigil_dead_letter_records_total", {"topic": "t", "reason": "invalid_event"}) == 1
    assert registry.get_sample_value("vigil_detection_delay_seconds_bucket", {"detector": "zscore", "le": "5.0"}) == 1
    with pytest.raises(KeyError, match=r"not in vigil\.metrics_catalog"):
        gauge(registry, "vigil_made_up")
    with pytest.raises(TypeError, match="is a gauge"):
        counter(registry, "vigil_bus_up")
    assert gauge_family("vigil_outbox_pending").documentation.startswith("Notifications waiting")


def test_the_readme_lists_every_family() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f.name for f in FAMILIES if f"`{f.name}" not in readme]
    assert not missing, f"README 'Metrics' does not list: {missing}"
    assert "vigil_<telemetry metric>" in readme
