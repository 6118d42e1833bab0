"""The codec: every event type round-trips; anything malformed raises InvalidEvent."""

from __future__ import annotations

import json
import math

import msgpack
import numpy as np
import pytest

from vigil.codec import decode, encode
from vigil.errors import InvalidEvent
from vigil.events import (
    ActionReport,
    ActionRequest,
    Alert,
    Detection,
    FaultInjection,
    LogEvent,
    Prediction,
    ProbeItem,
    ProbeResult,
    RemediationRun,
    StepState,
    TelemetryBatch,
    TrainingStep,
    parse_series_key,
    series_key,
)

NOW = 1_790_000_000.5


def batch(t: int = 2) -> TelemetryBatch:
    series = (
        series_key("gpu_temperature_celsius", {"gpu_index": "0"}),
        series_key("gpu_ecc_sbe_volatile_total", {"gpu_index": "0"}),
    )
    return TelemetryBatch(
        "node-00", "dc1", NOW + np.arange(t, dtype=float), series, np.arange(2 * t, dtype=float).reshape(t, 2)
    )


EVENTS = [
    LogEvent(NOW, "node-00", "dc1", "xid", 79, "NVRM: Xid (PCI:0000:3b:00): 79", gpu_pci="0000:3b:00.0", gpu_index=3),
    TrainingStep(NOW, "job-0", 3, "node-00", 1200, 2.5, 0.51, gpu_index=3, compute_time_s=0.4, tokens_per_s=1e5),
    Detection(NOW, "zscore", "s", {"host": "node-00"}, 7.5, "firing", "warning", {"z": 7.5}, NOW - 10, NOW),
    Prediction(NOW, "disk", "disk:S1", "disk", 0.8, 86400.0, {"disk_serial": "S1"}, {"smart_5": 12}),
    Alert("abc", "firing", {"alertname": "X"}, {"summary": "s"}, NOW, None, "critical", "reset_gpu", NOW),
    ProbeResult(NOW, "http://m", "llama", True, 0.12, 0.98, "ok"),
    ProbeResult(
        NOW, "digits@v2", "digits", False, 0.004, 0.5, "1 of 2 items failed", "digits", "v2", "", "oip_v2", 7, 1, 2,
        None, "remediation", (ProbeItem("a", True, 0.003, answer="3"), ProbeItem("b", False, 0.005, "expected 4", "1")),
    ),
    ProbeResult(NOW, "chat@node-1", "gemma", True, 0.8, 1.0, node="node-1", ttft_s=0.05,
                items=(ProbeItem("q", True, 0.8, answer='{"a": 1}', score=0.93, ttft_s=0.05),)),
    RemediationRun(NOW, "r1", "reset-gpu", "abc", (StepState("drain", "succeeded"),), "xid 79", "vigil"),
    RemediationRun(
        NOW, "r2", "xid-79", "k", (StepState("drain", "running"),), "", "vigil", "running", "execute", 7, {"host": "n"}
    ),
    ActionRequest(NOW, "r2/steps/0", "node.drain", "node-05", {"reason": "incident 7"}, "r2"),
    ActionReport(NOW, "r2/steps/0", "node.drain", "node-05", "done", "drained", {"drained": True}),
    FaultInjection("f-1", "xid79", {"host": "node-05", "gpu_index": "6"}, NOW, None, {"xid": 79}),
]


def test_telemetry_round_trip_is_columnar_and_exact() -> None:
    original = batch()
    decoded = decode(encode(original))
    assert isinstance(decoded, TelemetryBatch)
    assert decoded.series == original.series
    np.testing.assert_array_equal(decoded.values, original.values)
    np.testing.assert_allclose(decoded.ts, original.ts, atol=1e-6)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_type_round_trips(event: object) -> None:
    assert decode(encode(event)) == event  # type: ignore[arg-type]


def test_human_facing_events_are_json_with_offsets() -> None:
    text = encode(EVENTS[2]).decode()
    body = json.loads(text)
    assert body["type"] == "Detection" and body["v"] == 1
    assert body["ts"].endswith("+00:00")


def test_nan_loss_is_a_legitimate_training_value() -> None:
    step = TrainingStep(NOW, "job-0", 0, "h", 1, float("nan"), 0.5)
    decoded = decode(encode(step))
    assert isinstance(decoded, TrainingStep) and math.isnan(decoded.loss)


def _json(**overrides: object) -> bytes:
    body = json.loads(encode(EVENTS[2]))
    body.update(overrides)
    return json.dumps(body).encode()


def _packed(**overrides: object) -> bytes:
    body = msgpack.unpackb(encode(EVENTS[1]))
    body.update(overrides)
    return bytes(msgpack.packb(body))


MALFORMED = {
    "empty": b"",
    "random bytes": bytes(range(7, 250, 3)),
    "json list": b"[1,2]",
    "unknown type": _json(type="Nope"),
    "unknown schema version (json)": _json(v=99),
    "unknown schema version (binary)": _packed(v=2),
    "naive timestamp": _json(ts="2026-05-01T12:00:00"),
    "NaN in JSON": _json(score=float("nan")).replace(b"NaN", b"NaN"),
    "NaN where a count belongs": _packed(step=float("nan")),
    "negative rank": _packed(rank=-1),
    "missing field": _json(detector=None),
    "unknown field": _json(extra=1),
    "bad decision": _json(decision="maybe"),
    "timestamp in seconds not ns": _packed(ts=1_790_000_000),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_records_raise_invalid_event(data: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode(data)


def test_telemetry_with_nan_counter_or_wrong_sizes_is_invalid() -> None:
    good = msgpack.unpackb(encode(batch()))
    bad_counter = dict(good, values=np.array([[1.0, np.nan], [2.0, 3.0]]).tobytes())
    short = dict(good, values=good["values"][:-8])
    naive = dict(good, ts="2026-05-01T12:00:00")
    for body in (bad_counter, short, naive):
        with pytest.raises(InvalidEvent):
            decode(bytes(msgpack.packb(body)))


def test_series_keys_are_canonical_and_parse_back() -> None:
    key = series_key("gpu_power_watts", {"gpu_index": "2", "gpu_uuid": "GPU-1"})
    assert key == 'gpu_power_watts{gpu_index="2",gpu_uuid="GPU-1"}'
    assert parse_series_key(key) == ("gpu_power_watts", {"gpu_index": "2", "gpu_uuid": "GPU-1"})
    assert parse_series_key("host_load1") == ("host_load1", {})


def test_quoted_label_values_keep_commas_equals_braces_and_spaces() -> None:
    labels = {"device": "megaraid,0", "expr": "a=b", "odd": "}{", "model": "H100 SXM", "empty": ""}
    assert parse_series_key(series_key("disk read", labels)) == ("disk read", labels)
    assert parse_series_key('m{a=1, b = "x"}') == ("m", {"a": "1", "b": "x"})  # unquoted and spaced, as before
