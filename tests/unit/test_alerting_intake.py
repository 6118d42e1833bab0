"""Fingerprints, alert construction and the transition rule that keeps people from being paged twice."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
from vigil.alerting.config import DEFAULT_IDENTITY_LABELS, AlertingConfig, WebhookNotifierConfig
from vigil.alerting.intake import alertname, decide, fingerprint, to_alert
from vigil.alerting.notifiers.base import legacy_notification
from vigil.alerting.outbox import Backoff

from vigil.config import validate
from vigil.errors import ConfigError
from vigil.events import Detection

T0 = 1_767_225_600.0
IDENTITY = list(DEFAULT_IDENTITY_LABELS)


def det(decision: str = "firing", ts: float = T0, **labels: str) -> Detection:
    base = {"cluster": "c1", "host": "node-1", "gpu_index": "0"}
    return Detection(
        ts=ts,
        detector="gpu_thermal",
        series='gpu_temperature_celsius{gpu_index="0",host="node-1"}',
        labels={**base, **labels},
        score=4.25,
        decision=decision,  # type: ignore[arg-type]
        severity="critical",
        reason={"z": 4.25, "action": "drain node-1"},
        window_start=ts - 60,
        window_end=ts,
        summary="GPU 0 on node-1 runs hot",
    )


def test_fingerprint_is_stable_and_16_hex_chars() -> None:
    fp = fingerprint("GpuHot", {"host": "a", "gpu_index": "1"}, IDENTITY)
    assert fp == fingerprint("GpuHot", {"gpu_index": "1", "host": "a"}, IDENTITY)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == fingerprint("GpuHot", {"host": "a", "gpu_index": "1"}, list(reversed(IDENTITY)))
    # pinned: a change here would re-page every firing alert after an upgrade
    assert fp == "8a121f4cd97b3890"


def test_fingerprint_ignores_non_identity_labels_but_not_identity_ones() -> None:
    fp = fingerprint("GpuHot", {"host": "a", "gpu_index": "1"}, IDENTITY)
    assert fingerprint("GpuHot", {"host": "a", "gpu_index": "1", "model": "H100"}, IDENTITY) == fp
    assert fingerprint("GpuHot", {"host": "a", "gpu_index": "2"}, IDENTITY) != fp
    assert fingerprint("GpuCold", {"host": "a", "gpu_index": "1"}, IDENTITY) != fp
    assert fingerprint("GpuHot", {"host": "a"}, IDENTITY) != fp


def test_fingerprint_framing_prevents_collisions() -> None:
    joined = fingerprint("x", {"host": "a,b"}, IDENTITY)
    assert joined != fingerprint("x", {"host": "a", "cluster": "b"}, IDENTITY)


def test_alertname_prefers_label_over_detector() -> None:
    assert alertname(det()) == "gpu_thermal"
    assert alertname(det(alertname="GpuOverheating")) == "GpuOverheating"


def test_to_alert_labels_annotations_and_action() -> None:
    alert = to_alert(det(alertname="GpuOverheating", model="H100"), IDENTITY, now=T0 + 1)
    assert alert.labels["alertname"] == "GpuOverheating"
    assert alert.labels["severity"] == "critical" and alert.labels["model"] == "H100"
    assert alert.annotations["summary"] == "GPU 0 on node-1 runs hot"
    assert json.loads(alert.annotations["reason"]) == {"z": 4.25, "action": "drain node-1"}
    assert alert.annotations["detector"] == "gpu_thermal" and alert.annotations["score"] == "4.25"
    assert alert.annotations["series"].startswith("gpu_temperature_celsius{")
    assert alert.recommended_action == "drain node-1"
    assert (alert.status, alert.starts_at, alert.ends_at) == ("firing", T0, None)
    assert alert.fingerprint == fingerprint("GpuOverheating", alert.labels, IDENTITY)


def test_decide_first_no_change_resolved_refire() -> None:
    fire = to_alert(det(), IDENTITY, T0)
    first = decide(None, fire)
    assert first.reason == "first" and first.alert == fire
    assert decide(fire, to_alert(det(ts=T0 + 5), IDENTITY, T0 + 5)).reason == "no_change"
    resolved = decide(fire, to_alert(det("resolved", ts=T0 + 60), IDENTITY, T0 + 60))
    assert resolved.reason == "resolved" and resolved.alert is not None
    assert resolved.alert.ends_at == T0 + 60 and resolved.alert.starts_at == T0
    assert decide(resolved.alert, to_alert(det("resolved", ts=T0 + 70), IDENTITY, T0)).reason == "no_change"
    refire = decide(resolved.alert, to_alert(det(ts=T0 + 120), IDENTITY, T0 + 120))
    assert refire.reason == "first" and refire.alert is not None and refire.alert.starts_at == T0 + 120


def test_decide_ignores_replayed_history() -> None:
    fire = to_alert(det(), IDENTITY, T0)
    ended = replace(fire, status="resolved", ends_at=T0 + 60)
    # the replayed firing detection of the finished episode is not a new episode
    assert decide(ended, to_alert(det(ts=T0), IDENTITY, T0 + 500)).reason == "no_change"
    # a resolve from an older episode does not end the current one
    current = replace(fire, starts_at=T0 + 120)
    assert decide(current, to_alert(det("resolved", ts=T0 + 60), IDENTITY, T0 + 500)).reason == "no_change"
    assert decide(None, to_alert(det("resolved"), IDENTITY, T0)).reason == "no_change"


def test_notification_has_dedup_key_per_episode() -> None:
    alert = to_alert(det(), IDENTITY, T0)
    page = legacy_notification(alert, "first", receiver="hook")
    assert (page.action, page.reason, page.receiver) == ("trigger", "first", "hook")
    assert page.dedup_key == f"{alert.fingerprint}:2026-01-01T00:00:00+00:00"
    refire = to_alert(det(ts=T0 + 600), IDENTITY, T0 + 600)
    assert legacy_notification(refire, "first").dedup_key != page.dedup_key  # a new episode, a new page
    resolved = replace(alert, status="resolved", ends_at=T0 + 60)
    assert legacy_notification(resolved, "resolved").dedup_key == page.dedup_key


def test_backoff_grows_is_capped_and_jittered_reproducibly() -> None:
    a = Backoff(0.5, 4.0, 0, random.Random(7))
    b = Backoff(0.5, 4.0, 0, random.Random(7))
    delays = [a.delay(n) for n in range(1, 8)]
    assert delays == [b.delay(n) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        base = min(4.0, 0.5 * 2 ** (n - 1))
        assert base / 2 <= d <= base
    assert not a.exhausted(10**6)
    assert Backoff(0.5, 4.0, 3, random.Random(0)).exhausted(3)


def test_config_defaults_and_errors() -> None:
    config = validate(AlertingConfig, {})
    assert config.group == "vigil-alerting" and config.notifier_names() == ["log"]
    assert config.retry.initial_backoff == 0.5 and config.retry.max_backoff == 30.0
    webhooks = validate(
        AlertingConfig,
        {
            "notifiers": [
                {"type": "webhook", "url": "http://127.0.0.1/a", "timeout": "2s"},
                {"type": "webhook", "url": "https://example.org/b", "name": "ops"},
            ]
        },
    )
    assert webhooks.notifier_names() == ["webhook-0", "ops"]
    assert isinstance(webhooks.notifiers[0], WebhookNotifierConfig) and webhooks.notifiers[0].timeout == 2.0
    with pytest.raises(ConfigError, match=r"alerting\.retry\.max_backoff: invalid duration"):
        validate(AlertingConfig, {"retry": {"max_backoff": "3 sec"}}, "alerting")
    with pytest.raises(ConfigError, match="unique"):
        validate(AlertingConfig, {"notifiers": [{"type": "log", "name": "x"}, {"type": "log", "name": "x"}]})
    with pytest.raises(ConfigError, match=r"notifiers\[0\]"):
        validate(AlertingConfig, {"notifiers": [{"type": "pager"}]})
