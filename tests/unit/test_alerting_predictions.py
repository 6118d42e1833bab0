"""Prediction rules: config defaults and errors, hysteresis, escalation, identity and the words an alert carries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest
from vigil.alerting.config import AlertingConfig, PredictionAlertsConfig
from vigil.alerting.intake import decide
from vigil.alerting.predictions import (
    duration_words,
    percent,
    prediction_alerts,
    prediction_problem,
    render,
    top_evidence,
)
from vigil.analytics.models.predict.disk import FEATURES, RulePrior

from vigil.config import validate
from vigil.errors import ConfigError
from vigil.events import Alert, Prediction

T0 = 1_767_225_600.0
DAY = 86400.0
GPU_LABELS = {"cluster": "c1", "host": "node-1", "gpu_index": "3", "gpu_serial": "1650921000123"}


def rules(**section: Any) -> PredictionAlertsConfig:
    return validate(AlertingConfig, {"predictions": section}).predictions


def gpu(p: float, ts: float = T0, lemon: bool = False, **labels: str) -> Prediction:
    evidence: dict[str, Any] = {
        "remap_failure": 6.0,
        "lemon": 1.6,
        "xid": 0.4,
        "sbe_rate": 0.2,
        "lemon_score": 1.1,
        "repeat_offender": lemon,
    }
    return Prediction(
        ts, "gpu_risk", f"gpu:{labels.get('host', 'node-1')}/3", "gpu", p, 7 * DAY, {**GPU_LABELS, **labels}, evidence
    )


def fs(p: float, eta_s: float, ts: float = T0) -> Prediction:
    return Prediction(
        ts,
        "time_to_disk_full",
        "fs:node-1:/data",
        "filesystem",
        p,
        eta_s,
        {"cluster": "c1", "host": "node-1", "mountpoint": "/data"},
        {"free_bytes": 2.0e9, "size_bytes": 5.0e11},
    )


def one(prediction: Prediction, config: PredictionAlertsConfig | None = None) -> Alert | None:
    """The candidate of the predictor's own rule (always first; the repeat-offender rule may follow)."""
    candidates = prediction_alerts(prediction, config or rules(), T0)
    assert candidates
    return candidates[0]


# ---------------------------------------------------------------- config


def test_defaults_cover_every_predictor_analytics_publishes() -> None:
    config = rules()
    names = {k: (r.alertname, r.open_at, r.close_at, r.severity) for k, r in config.rules.items()}
    assert names == {
        "gpu_risk": ("GpuFailureRisk", 0.5, 0.3, "warning"),
        "disk_rule_prior": ("DiskFailureRisk", 0.05, 0.03, "warning"),
        "disk_gbm": ("DiskFailureRisk", 0.2, 0.1, "warning"),
        "time_to_disk_full": ("FilesystemFillingUp", 1.0, 0.5, "warning"),
        "time_to_thermal_limit": ("GpuApproachingThermalLimit", 1.0, 0.5, "warning"),
    }
    assert config.rules["time_to_disk_full"].critical_within == 3600.0
    assert config.repeat_offender.alertname == "GpuRepeatOffender"


def test_disk_prior_thresholds_sit_where_the_rule_prior_can_reach() -> None:
    """The prior says ~10% only for a flagged counter that grew this week; the rule must open there
    and close when growth stops (the flag alone is ~2%), or it would be dead or stuck open."""
    prior = RulePrior(horizon_days=30)
    row = dict.fromkeys(FEATURES, 0.0)
    clean, flagged, growing = (
        float(prior.predict_proba(pd.DataFrame([{**row, **extra}], columns=list(FEATURES)))[0])
        for extra in ({}, {"smart_5_raw": 8.0}, {"smart_5_raw": 8.0, "smart_5_delta": 3.0})
    )
    rule = rules().rules["disk_rule_prior"]
    assert growing >= rule.open_at and flagged < rule.close_at and clean < rule.close_at


def test_a_configured_rule_is_merged_over_its_default() -> None:
    config = rules(
        rules={
            "gpu_risk": {"open_at": 0.7},
            "node_risk": {"alertname": "NodeFailureRisk", "open_at": 0.4, "close_at": 0.2, "action": "drain {host}"},
        }
    )
    gpu_rule = config.rules["gpu_risk"]
    assert (gpu_rule.open_at, gpu_rule.close_at, gpu_rule.alertname) == (0.7, 0.3, "GpuFailureRisk")
    assert config.rules["node_risk"].action == "drain {host}"
    assert rules(rules={"gpu_risk": {"enabled": False}}).rule("gpu_risk") is None


def test_config_survives_its_own_dump() -> None:
    """``vigil up`` hands each service its section as a dumped file: merging defaults twice is harmless."""
    config = validate(AlertingConfig, {"predictions": {"rules": {"time_to_disk_full": {"critical_within": "2h"}}}})
    assert validate(AlertingConfig, config.model_dump(mode="json")) == config
    assert config.predictions.rules["time_to_disk_full"].critical_within == 7200.0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rules": {"gpu_risk": {"close_at": 0.6}}}, "alerting.predictions.rules.gpu_risk: close_at (0.6) must not"),
        ({"rules": {"gpu_risk": {"open_at": 1.5}}}, "alerting.predictions.rules.gpu_risk.open_at: Input should be"),
        ({"rules": {"gpu_risk": {"action": "drain {node.name}"}}}, "rules.gpu_risk.action: template field {node.name}"),
        ({"rules": {"gpu_risk": {"summary": "oops {"}}}, "rules.gpu_risk.summary: not a valid template"),
        ({"rules": {"gpu_risk": {"open_at_": 0.5}}}, "rules.gpu_risk.open_at_: unknown key"),
        ({"rules": {"gpu_risk": {"critical_within": "1h"}}}, "rules.gpu_risk: critical_within applies to forecast"),
        ({"rules": {"gpu_risk": {"severity": "page"}}}, "rules.gpu_risk.severity: Input should be"),
        ({"rules": {"node_risk": {"open_at": 0.4}}}, "rules.node_risk.alertname: Field required"),
        ({"repeat_offender": {"action": "rma {0}"}}, "repeat_offender.action: template field {0}"),
    ],
)
def test_bad_config_fails_naming_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(AlertingConfig, {"predictions": section}, prefix="alerting")
    assert message in str(info.value)


# ---------------------------------------------------------------- hysteresis and transitions


def run(timeline: Sequence[Prediction], config: PredictionAlertsConfig | None = None) -> list[str]:
    """Feed predictions through the rule and the transition rule; return what each one did."""
    stored: dict[str, Alert] = {}
    out = []
    for prediction in timeline:
        for candidate in prediction_alerts(prediction, config or rules(), prediction.ts):
            if candidate is None:
                out.append("band")
                continue
            transition = decide(stored.get(candidate.fingerprint), candidate, escalate=True)
            if transition.alert is not None:
                stored[candidate.fingerprint] = transition.alert
            out.append(transition.reason)
    return out


def test_hysteresis_opens_at_open_at_and_closes_below_close_at() -> None:
    probabilities = [0.2, 0.49, 0.5, 0.7, 0.4, 0.3, 0.29, 0.45, 0.55]
    timeline = [gpu(p, ts=T0 + 60 * i) for i, p in enumerate(probabilities)]
    assert run(timeline, rules(repeat_offender={"enabled": False})) == [
        "no_change",
        "band",
        "first",
        "no_change",
        "band",
        "band",
        "resolved",
        "band",
        "first",
    ]


def test_a_replayed_timeline_changes_nothing() -> None:
    timeline = [gpu(0.6), gpu(0.1, ts=T0 + 60), gpu(0.8, ts=T0 + 120)]
    stored: dict[str, Alert] = {}
    reasons = []
    for prediction in [*timeline, *timeline]:
        candidate = one(prediction)
        assert candidate is not None
        transition = decide(stored.get(candidate.fingerprint), candidate, escalate=True)
        if transition.alert is not None:
            stored[candidate.fingerprint] = transition.alert
        reasons.append(transition.reason)
    assert reasons == ["first", "resolved", "first", "no_change", "no_change", "no_change"]


def test_filesystem_escalates_to_critical_under_an_hour_and_a_zero_forecast_resolves() -> None:
    timeline = [
        fs(1.0, 20 * 3600),
        fs(1.0, 10 * 3600, T0 + 600),
        fs(1.0, 1800, T0 + 1200),
        fs(1.0, 600, T0 + 1800),
        fs(0.0, 0.0, T0 + 2400),
    ]
    assert run(timeline) == ["first", "no_change", "escalated", "no_change", "resolved"]
    warning, critical = one(timeline[0]), one(timeline[2])
    assert warning is not None and critical is not None
    assert (warning.severity, critical.severity, critical.labels["severity"]) == ("warning", "critical", "critical")
    assert critical.fingerprint == warning.fingerprint  # one alert, more urgent


def test_escalation_keeps_the_episode_and_ignores_stale_or_equal_candidates() -> None:
    warning, critical = one(fs(1.0, 7200)), one(fs(1.0, 1800, T0 + 60))
    assert warning is not None and critical is not None
    escalated = decide(warning, critical, escalate=True).alert
    assert escalated is not None
    assert (escalated.starts_at, escalated.severity) == (T0, "critical")
    assert escalated.annotations["eta"] == "in about 30 minutes"
    assert decide(escalated, critical, escalate=True).reason == "no_change"  # replay
    assert decide(escalated, warning, escalate=True).reason == "no_change"  # never downgraded
    older = one(fs(1.0, 1800, T0 - 60))
    assert older is not None and decide(warning, older, escalate=True).reason == "no_change"
    assert decide(warning, critical).reason == "no_change"  # detections never escalate


# ---------------------------------------------------------------- identity


def test_fingerprint_is_the_alertname_cluster_and_entity() -> None:
    alert = one(gpu(0.6))
    assert alert is not None
    assert alert.labels["entity"] == "gpu:node-1/3" and alert.labels["alertname"] == "GpuFailureRisk"
    documented = json.dumps(["GpuFailureRisk", [["cluster", "c1"], ["entity", "gpu:node-1/3"]]], separators=(",", ":"))
    assert alert.fingerprint == hashlib.sha256(documented.encode()).hexdigest()[:16]
    assert alert.fingerprint == "51ae4a153f24d361"  # pinned: a change re-pages every firing alert
    later = one(gpu(0.9, ts=T0 + 3600, gpu_serial=""))  # the serial was not known yet: same alert
    assert later is not None and later.fingerprint == alert.fingerprint and "gpu_serial" not in later.labels


def test_each_disk_and_filesystem_is_its_own_alert_whatever_model_predicted_it() -> None:
    def disk(predictor: str, device: str) -> Alert | None:
        labels = {"cluster": "c1", "host": "node-1", "device": device}
        return one(Prediction(T0, predictor, f"disk:node-1:{device}", "disk", 0.4, 30 * DAY, labels, {}))

    sda, sdb, gbm = disk("disk_rule_prior", "sda"), disk("disk_rule_prior", "sdb"), disk("disk_gbm", "sda")
    assert sda is not None and sdb is not None and gbm is not None
    assert sda.fingerprint != sdb.fingerprint
    assert sda.fingerprint == gbm.fingerprint and gbm.annotations["predictor"] == "disk_gbm"


def test_repeat_offender_is_one_alert_per_serial_that_follows_the_board() -> None:
    here = prediction_alerts(gpu(0.4, lemon=True), rules(), T0)
    moved = prediction_alerts(gpu(0.4, ts=T0 + DAY, lemon=True, host="node-7"), rules(), T0)
    assert here[0] is None  # the risk itself is inside the band, no alert ...
    lemon, lemon_moved = here[1], moved[1]
    assert lemon is not None and lemon_moved is not None  # ... but the board is a lemon
    assert lemon.labels["alertname"] == "GpuRepeatOffender" and lemon.status == "firing"
    assert lemon.labels["entity"] == "gpu_serial:1650921000123"
    assert lemon.recommended_action == "open an RMA case for serial 1650921000123"
    assert lemon_moved.fingerprint == lemon.fingerprint and lemon_moved.labels["host"] == "node-7"
    cleared = prediction_alerts(gpu(0.4, ts=T0 + 30 * DAY, lemon=False), rules(), T0)[1]
    assert cleared is not None and cleared.status == "resolved"
    no_serial = prediction_alerts(gpu(0.4, lemon=True, gpu_serial=""), rules(), T0)
    assert no_serial == [None]  # a lemon is a board: without its serial there is nothing to follow
    assert prediction_alerts(gpu(0.4, lemon=True), rules(repeat_offender={"enabled": False}), T0) == [None]


def test_unknown_predictor_meets_no_rule() -> None:
    unknown = Prediction(T0, "psu_risk", "psu:node-1/0", "node", 0.9, DAY, {"host": "node-1"}, {})
    assert prediction_alerts(unknown, rules(), T0) == []


# ---------------------------------------------------------------- words


def test_gpu_risk_alert_says_probability_horizon_evidence_and_action() -> None:
    alert = one(gpu(0.62))
    assert alert is not None
    notes = alert.annotations
    assert notes["summary"] == "GPU 3 on node-1: 62% chance of failure within 7 days"
    assert notes["top_evidence"] == "remap_failure=6, lemon=1.6, xid=0.4"  # lemon_score is context
    assert json.loads(notes["reason"])["repeat_offender"] is False
    assert (notes["probability"], notes["horizon"], notes["predictor"]) == ("0.62", "7 days", "gpu_risk")
    assert alert.recommended_action.startswith("drain the node (node-1) at the next job boundary; check `nvidia-smi")
    assert "-i 3 -q -d ROW_REMAPPER,ECC,PAGE_RETIREMENT`; RMA if remap failure" in alert.recommended_action
    assert (alert.status, alert.severity, alert.starts_at, alert.updated_at) == ("firing", "warning", T0, T0)


def test_forecast_alert_carries_the_eta() -> None:
    alert = one(fs(1.0, 5400))
    assert alert is not None
    notes = alert.annotations
    assert (
        notes["summary"]
        == "Filesystem /data on node-1 will be full in about 1.5 hours (at the current rate of filling)"
    )
    assert (notes["eta"], notes["eta_at"]) == ("in about 1.5 hours", "2026-01-01T01:30:00+00:00")
    assert alert.severity == "warning"
    assert "`du -xh --max-depth=2 /data | sort -h | tail`" in alert.recommended_action
    full = one(fs(1.0, 0.0))
    assert full is not None and full.severity == "critical" and "will be full now" in full.annotations["summary"]


def test_thermal_forecast_summary_uses_its_evidence() -> None:
    labels = {"cluster": "c1", "host": "node-1", "gpu_index": "3"}
    evidence = {"limit_celsius": 87.0, "temperature_celsius": 81.4}
    alert = one(Prediction(T0, "time_to_thermal_limit", "gpu:node-1/3", "gpu", 1.0, 1260.0, labels, evidence))
    assert alert is not None and alert.labels["alertname"] == "GpuApproachingThermalLimit"
    assert alert.annotations["summary"] == (
        "GPU 3 on node-1 will reach its slowdown temperature (87 °C, now 81 °C) in about 21 minutes"
    )


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (45, "45 seconds"),
        (90, "1.5 minutes"),
        (3600, "1 hour"),
        (5400, "1.5 hours"),
        (36000, "10 hours"),
        (7 * DAY, "7 days"),
        (30 * DAY, "30 days"),
        (-5, "0 seconds"),
    ],
)
def test_duration_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


def test_percent_never_rounds_a_risk_to_certainty_or_nothing() -> None:
    assert [percent(p) for p in (0.0, 0.004, 0.05, 0.62, 0.996, 1.0)] == ["0%", "<1%", "5%", "62%", ">99%", "100%"]


def test_top_evidence_skips_context_and_non_numbers() -> None:
    evidence = {"smart_5_raw": 12.0, "smart_9_raw": 30000.0, "flag": True, "note": "x", "smart_5_delta": 4.0}
    assert top_evidence(evidence, ["smart_9_raw"], 3) == "smart_5_raw=12, smart_5_delta=4"
    assert top_evidence(evidence, [], 1) == "smart_5_raw=12"


def test_render_never_raises_on_missing_fields_or_mismatched_specs() -> None:
    assert render("{host} at {temp:.0f} C, {absent:.1f}", {"host": "n1", "temp": "hot"}) == "n1 at hot C, ?"
    assert render("{{literal}} {x}", {"x": 1}) == "{literal} 1"


def test_prediction_problem_catches_what_the_codec_lets_through() -> None:
    assert prediction_problem(gpu(0.5)) is None
    assert "probability 1.7" in (prediction_problem(gpu(1.7)) or "")
    bad_horizon = Prediction(T0, "gpu_risk", "gpu:n/0", "gpu", 0.5, -1.0, {}, {})
    assert "horizon_s" in (prediction_problem(bad_horizon) or "")
    assert "empty" in (prediction_problem(Prediction(T0, "", "gpu:n/0", "gpu", 0.5, 1.0, {}, {})) or "")
