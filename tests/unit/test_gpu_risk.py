from __future__ import annotations

import pytest
from vigil.analytics.models.predict.gpu import HORIZON_S, LEMON_AT, GpuReading, GpuRisk


def feed(risk: GpuRisk, gpu: str, serial: str, minutes: int, sbe_per_min: float = 0.0, **extra: float) -> None:
    for m in range(minutes):
        risk.observe(
            GpuReading(
                ts=60.0 * m,
                host="n1",
                gpu_index=gpu,
                serial=serial,
                sbe_total=sbe_per_min * m,
                temperature=60.0,
                slowdown_temperature=90.0,
                **extra,
            )
        )


def test_healthy_gpu_stays_below_reporting() -> None:
    risk = GpuRisk()
    feed(risk, "0", "S0", 120)
    assert risk.probability("n1/0", 7200.0) < 0.01
    assert risk.predict(7200.0) == []


def test_each_signal_raises_risk_and_names_itself() -> None:
    base = GpuRisk()
    feed(base, "0", "S0", 120)
    p0 = base.probability("n1/0", 7200.0)
    cases = [
        ({"sbe_per_min": 20.0}, "sbe_rate"),
        ({"remap_pending": 1.0}, "remap_pending"),
        ({"remap_failure": 1.0}, "remap_failure"),
        ({"remapped_uncorrectable": 3.0}, "remapped_uncorrectable"),
    ]
    for extra, term in cases:
        risk = GpuRisk()
        feed(risk, "0", "S0", 120, **extra)
        assert risk.probability("n1/0", 7200.0) > p0
        assert term in risk.terms("n1/0", 7200.0)


def test_remap_failure_is_published_with_evidence_and_the_horizon() -> None:
    risk = GpuRisk()
    feed(risk, "3", "S3", 30, remap_failure=1.0)
    preds = risk.predict(1800.0)
    assert len(preds) == 1
    p = preds[0]
    assert p.kind == "gpu" and p.entity == "gpu:n1/3" and p.horizon_s == HORIZON_S
    assert p.probability > 0.5
    assert next(iter(p.evidence)) == "remap_failure"  # the biggest contribution comes first
    assert p.labels["gpu_serial"] == "S3"
    assert risk.predict(1860.0) == []  # unchanged risk is not republished


def test_hot_gpu_close_to_slowdown_raises_risk() -> None:
    risk = GpuRisk()
    risk.observe(GpuReading(ts=0.0, host="n1", gpu_index="0", temperature=88.0, slowdown_temperature=90.0))
    assert risk.terms("n1/0", 0.0)["thermal"] == pytest.approx(1.5 * 0.8)


def test_lemon_follows_the_serial_across_hosts_and_decays() -> None:
    risk = GpuRisk()
    risk.observe(GpuReading(ts=0.0, host="n1", gpu_index="0", serial="BAD", dbe_total=0.0))
    risk.observe(GpuReading(ts=60.0, host="n1", gpu_index="0", serial="BAD", dbe_total=2.0))  # incident 1
    # the board is RMA'd into another host and throws a fatal XID there
    risk.observe(GpuReading(ts=86400.0, host="n7", gpu_index="5", serial="BAD"))
    risk.observe_xid(86400.0, "n7", "5", "critical", fatal=True)  # incident 2
    assert risk.lemon_score("BAD", 86400.0) >= LEMON_AT * 0.95
    preds = {p.entity: p for p in risk.predict(86400.0)}
    assert preds["gpu:n7/5"].evidence["lemon_score"] > 1.9
    assert risk.lemon_score("BAD", 86400.0 + 90 * 86400.0) < 0.5  # three half-lives later


def test_counter_reset_is_not_an_error_burst() -> None:
    risk = GpuRisk()
    risk.observe(GpuReading(ts=0.0, host="n1", gpu_index="0", sbe_total=1000.0))
    risk.observe(GpuReading(ts=60.0, host="n1", gpu_index="0", sbe_total=0.0))  # driver reload
    assert "sbe_rate" not in risk.terms("n1/0", 60.0)
