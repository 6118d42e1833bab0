"""Range checks at decode: well-typed values no real reading can hold are InvalidEvent, on every path.

The three poison records of issue 14 first (each decoded fine before, then crashed or paged), then
every limited field of every event type in both wire forms, then the renderers that crashed: they
must not raise for anything that passes decode.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from vigil.alerting.config import PredictionAlertsConfig
from vigil.alerting.intake import to_alert
from vigil.alerting.notifiers.base import legacy_notification
from vigil.alerting.predictions import prediction_alerts

from tests import poison
from vigil.clock import from_iso, to_iso
from vigil.codec import LIMITS, decode, encode
from vigil.errors import InvalidEvent
from vigil.events import Detection, ProbeResult, TrainingStep

NOW = poison.T0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (poison.detection_year_10000(), "Detection.ts '9999-12-31T23:59:59-14:00' is outside 2000-01-01..2100-01-01"),
        (poison.prediction_far_horizon(), "Prediction.horizon_s: 1000000000000.0 is outside 0..315360000"),
        (poison.log_event_huge_gpu(), "LogEvent.gpu_index: 9223372036854775808 is outside 0..255"),
        (poison.log_event_huge_gpu_json(), "LogEvent.gpu_index: 9223372036854775808 is outside 0..255"),
    ],
    ids=["detection ts year 10000 (json)", "prediction horizon 1e12 (json)", "gpu 2**63 (binary)", "gpu 2**63 (json)"],
)
def test_the_three_poison_records_are_invalid_with_a_clear_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(data)
    assert str(caught.value) == reason


def test_the_same_records_with_real_values_decode() -> None:
    assert decode(encode(poison.detection())) == poison.detection()
    assert decode(encode(poison.prediction())) == poison.prediction()
    assert decode(encode(poison.log_event())) == poison.log_event()


def _flat(event: Any, **overrides: Any) -> bytes:
    body = msgpack.unpackb(encode(event))
    body.update(overrides)
    return bytes(msgpack.packb(body))


def _json(event: Any, **overrides: Any) -> bytes:
    body = json.loads(encode(event))
    body.update(overrides)
    return json.dumps(body).encode()


def _as_json(event: Any, **overrides: Any) -> bytes:
    """A binary-form event written in the JSON form (decode accepts both for every type)."""
    body = msgpack.unpackb(encode(event))
    name = body.pop("t")
    body.pop("v")
    body["ts"] = to_iso(event.ts)
    return json.dumps({"type": name, "v": 1, **body, **overrides}).encode()


STEP = TrainingStep(NOW, "job", 3, "node-1", 100, 2.5, 0.5, gpu_index=1, compute_time_s=0.4)
PROBE = ProbeResult(NOW, "http://m", "llama", True, 0.12, 0.98)
OUT_OF_RANGE = {
    "LogEvent.gpu_index 256": _flat(poison.log_event(), gpu_index=256),
    "LogEvent.code 2**31": _flat(poison.log_event(), code=2**31),
    "TrainingStep.rank 2**31 (binary)": _flat(STEP, rank=2**31),
    "TrainingStep.rank 2**31 (json)": _as_json(STEP, rank=2**31),
    "TrainingStep.step 2**60": _flat(STEP, step=2**60),
    "TrainingStep.gpu_index -1": _flat(STEP, gpu_index=-1),
    "TrainingStep.step_time_s 8 days": _flat(STEP, step_time_s=8 * 86400.0),
    "TrainingStep.step_time_s negative": _flat(STEP, step_time_s=-0.5),
    "TrainingStep.step_time_s inf": _flat(STEP, step_time_s=math.inf),
    "TrainingStep.compute_time_s 1e12 (json)": _as_json(STEP, compute_time_s=1e12),
    "ProbeResult.latency_s 2 days": _json(PROBE, latency_s=2 * 86400.0),
    "ProbeResult.latency_s negative": _json(PROBE, latency_s=-1.0),
    "ProbeResult.quality above 1": _json(PROBE, quality=1.5),
    "ProbeResult.ttft_s negative": _json(PROBE, ttft_s=-0.1),
    "ProbeResult.total 2**31": _json(PROBE, total=2**31),
    "ProbeItem.latency_s 2 days": _json(PROBE, items=[{"id": "a", "ok": True, "latency_s": 2 * 86400.0}]),
    "Prediction.horizon_s negative": _json(poison.prediction(), horizon_s=-1.0),
    "Detection.window_start 1970": _json(poison.detection(), window_start="1970-01-01T00:00:00+00:00"),
    "Detection.window_end year 2200": _json(poison.detection(), window_end="2200-01-01T00:00:00+00:00"),
    "LogEvent.ts year 10000 (json)": _as_json(poison.log_event(), ts=poison.YEAR_10000),
    "LogEvent.ts year 2262 (binary)": _flat(poison.log_event(), ts=2**63 - 1),
}


@pytest.mark.parametrize("data", OUT_OF_RANGE.values(), ids=list(OUT_OF_RANGE))
def test_out_of_range_fields_are_invalid_in_both_forms(data: bytes) -> None:
    with pytest.raises(InvalidEvent, match="outside"):
        decode(data)


@pytest.mark.parametrize(
    "items",
    [{"id": "a"}, [{"id": "a", "ok": True}], [{"id": "a", "ok": "yes", "latency_s": 1.0}], ["a"],
     [{"id": "a", "ok": True, "latency_s": 1.0, "extra": 1}]],
    ids=["not a list", "item missing latency", "ok not a bool", "item not an object", "unknown item field"],
)
def test_probe_items_are_checked_like_events(items: Any) -> None:
    with pytest.raises(InvalidEvent, match=r"ProbeItem|ProbeResult\.items"):
        decode(_json(PROBE, items=items))


def test_every_limited_field_exists_on_some_event_type() -> None:
    """A limit on a field no event has would be a typo that silently checks nothing."""
    from dataclasses import fields

    from vigil.events import EVENT_TYPES

    names = {f.name for cls in EVENT_TYPES.values() for f in fields(cls)}
    assert set(LIMITS) <= names


def test_values_at_the_limits_decode_and_nan_step_time_means_not_measured() -> None:
    edge = TrainingStep(4_102_444_800.0, "job", 2**31 - 1, "h", 2**53, 1.0, 7 * 86400.0, gpu_index=255)
    assert decode(encode(edge)) == edge
    unmeasured = decode(_flat(STEP, step_time_s=math.nan, compute_time_s=math.nan))
    assert isinstance(unmeasured, TrainingStep) and math.isnan(unmeasured.step_time_s)


def test_to_iso_never_raises_and_its_fallback_is_not_a_time() -> None:
    for ts in (253_402_351_199.0, 1e20, -1e20, math.nan, math.inf):
        text = to_iso(ts)
        assert text.startswith("invalid-time(")
        with pytest.raises(InvalidEvent):
            from_iso(text)
    assert to_iso(NOW) == "2026-01-01T00:00:00+00:00"


def test_renderers_do_not_raise_for_the_extremes_that_pass_decode() -> None:
    """The latest timestamp plus the longest horizon still renders as an ETA and a payload."""
    latest = decode(encode(poison.prediction(horizon_s=3650 * 86400.0, ts=4_102_444_800.0)))
    [alert] = prediction_alerts(latest, PredictionAlertsConfig(), now=NOW)  # type: ignore[arg-type]
    assert alert is not None and alert.annotations["eta_at"].startswith("2109-")
    payload = legacy_notification(alert, "first").to_json()
    assert payload["members"][0]["starts_at"].startswith("2100-01-01T00:00:00")
    detection = decode(encode(poison.detection(ts=4_102_444_800.0)))
    assert isinstance(detection, Detection)
    body = legacy_notification(to_alert(detection, ["host"], NOW), "first").to_json()
    assert body["dedup_key"].endswith(":2100-01-01T00:00:00+00:00")
