"""The three poison records of issue 14, in the forms a producer can put them on a topic.

Each is well-typed (valid ISO-8601, a float, an integer) yet no real reading: before the codec
range-checked them, the first two crashed alerting (``to_iso`` in year 10000; ``eta_at`` 30,000
years out) on every restart, and the third paged for GPU 2**63.
"""

from __future__ import annotations

import json

import msgpack

from vigil.codec import encode
from vigil.events import Detection, LogEvent, Prediction

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
YEAR_10000 = "9999-12-31T23:59:59-14:00"  # 10000-01-01T13:59:59Z once the offset is applied
HUGE_GPU = 2**63


def detection(ts: float = T0, host: str = "node-1") -> Detection:
    return Detection(
        ts=ts,
        detector="gpu_thermal",
        series=f'gpu_temperature_celsius{{gpu_index="0",host="{host}"}}',
        labels={"cluster": "c1", "host": host, "gpu_index": "0"},
        score=5.0,
        decision="firing",
        severity="critical",
        reason={"action": "drain"},
        window_start=ts - 60,
        window_end=ts,
        summary=f"GPU 0 on {host} runs hot",
    )


def prediction(horizon_s: float = 3600.0, ts: float = T0) -> Prediction:
    return Prediction(
        ts=ts,
        predictor="time_to_disk_full",
        entity="fs:node-1:/data",
        kind="disk",
        probability=1.0,
        horizon_s=horizon_s,
        labels={"cluster": "c1", "host": "node-1", "mountpoint": "/data"},
        evidence={"used_ratio": 0.93},
    )


def log_event(gpu_index: int = 3, ts: float = T0) -> LogEvent:
    return LogEvent(
        ts, "node-1", "c1", "xid", 79, "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus", gpu_index=gpu_index
    )


def detection_year_10000() -> bytes:
    """JSON (the form detections travel in): ``ts`` in year 10000 UTC."""
    body = json.loads(encode(detection()))
    body["ts"] = YEAR_10000
    return json.dumps(body).encode()


def prediction_far_horizon() -> bytes:
    """JSON: a forecast whose ETA is 1e12 seconds (31,700 years) away."""
    return encode(prediction(horizon_s=1e12))


def log_event_huge_gpu() -> bytes:
    """Binary (the form logs travel in): ``gpu_index`` 2**63, a valid msgpack uint64."""
    return encode(log_event(gpu_index=HUGE_GPU))


def log_event_huge_gpu_json() -> bytes:
    """The same LogEvent in the JSON form, which ``decode`` also accepts."""
    body = msgpack.unpackb(encode(log_event()))
    body.pop("t"), body.pop("v")
    body["ts"] = "2026-01-01T00:00:00+00:00"
    body["gpu_index"] = HUGE_GPU
    return json.dumps({"type": "LogEvent", "v": 1, **body}).encode()
