"""The open-incident gauges: priority bands over GPU-hours at risk, every label combination shown."""

from __future__ import annotations

import pytest
from vigil.alerting.metrics import DOMAIN_KINDS, PRIORITY_BANDS, incident_families, priority_band


@pytest.mark.parametrize(
    ("gpu_hours", "band"), [(0.0, "P4"), (0.99, "P4"), (1.0, "P3"), (9.9, "P3"), (10.0, "P2"), (128.0, "P1")]
)
def test_priority_bands(gpu_hours: float, band: str) -> None:
    assert priority_band(gpu_hours) == band


def test_open_incidents_are_counted_by_band_and_domain_kind_with_zeros_shown() -> None:
    opened, at_risk = incident_families([("gpu:node-1/3", 0.5), ("job:job-0", 128.0), ("gpu:node-2/0", 0.25)])
    counts = {(s.labels["priority"], s.labels["domain"]): s.value for s in opened.samples}
    assert len(counts) == len(PRIORITY_BANDS) * len(DOMAIN_KINDS)
    assert counts[("P4", "gpu")] == 2 and counts[("P1", "job")] == 1
    assert sum(counts.values()) == 3
    hours = {s.labels["domain"]: s.value for s in at_risk.samples}
    assert hours["gpu"] == pytest.approx(0.75 * 3600) and hours["job"] == 128.0 * 3600 and hours["switch"] == 0.0
