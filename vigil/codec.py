"""The one place that turns events into bytes and bytes into events.

Two versioned wire forms, told apart by the first byte:

* binary (msgpack map) for machine-volume events (telemetry, logs, training steps); arrays travel
  as raw little-endian bytes and timestamps as int64 epoch nanoseconds, so decoding a telemetry
  batch is two ``numpy.frombuffer`` calls and no per-sample objects;
* JSON (first byte ``{``) for events a person reads (detections, alerts, ...); timestamps are
  ISO-8601 with a UTC offset, and a naive timestamp is rejected.

``decode`` raises :class:`InvalidEvent` for anything it cannot fully validate, including values of
the right type that no real reading can hold (:data:`LIMITS`): a record stamped in the year 10000,
a forecast 30,000 years out or GPU 2**63 is a poison record, and is dead-lettered here rather than
crashing, or paging from, the consumer that would act on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgpack
import numpy as np

from vigil.clock import from_iso, to_iso
from vigil.errors import InvalidEvent
from vigil.events import EVENT_TYPES, Event, ProbeItem, StepState, TelemetryBatch, TrainingStepBatch

BINARY_TYPES = frozenset({"TelemetryBatch", "LogEvent", "TrainingStep", "TrainingStepBatch"})
COLUMNAR = frozenset({"TelemetryBatch", "TrainingStepBatch"})
TIME_FIELDS = frozenset({"ts", "window_start", "window_end", "starts_at", "ends_at", "updated_at", "start", "end"})
_MIN_TS = 946_684_800.0  # 2000-01-01: anything earlier is a unit mistake, not a real reading
_MAX_TS = 4_102_444_800.0  # 2100-01-01
_DAY = 86_400
# The inclusive range of every index, count and duration field, by field name (the same in every
# event type). Beyond these a value is a unit mistake or a poison record; the bounds are wide enough
# for any real fleet and small enough that every renderer (ISO dates, "in about N days") stays
# within its range: a timestamp up to 2100 plus a 10-year horizon is still a datetime.
LIMITS: dict[str, tuple[int, int]] = {
    "gpu_index": (0, 255),  # NVML device index: a few dozen per node at most, 256 leaves room
    "rank": (0, 2**31 - 1),
    "code": (0, 2**31 - 1),  # XID/SXID codes, MCA bank, AER class
    "step": (0, 2**53),  # exact in a float64, where the detectors keep it
    "step_time_s": (0, 7 * _DAY),
    "compute_time_s": (0, 7 * _DAY),
    "latency_s": (0, _DAY),
    "ttft_s": (0, _DAY),
    "quality": (0, 1),  # a canary round's share of golden items that passed
    "passed": (0, 2**31 - 1),
    "total": (0, 2**31 - 1),
    "round": (0, 2**53),
    "horizon_s": (0, 3650 * _DAY),
}
# Durations that may be NaN: "not measured" (a scraped gauge that was never set), not malformed.
_MAY_BE_NAN = frozenset({"step_time_s", "compute_time_s"})


def encode(event: Event) -> bytes:
    name = type(event).__name__
    if isinstance(event, TelemetryBatch):
        return _encode_telemetry(event)
    if isinstance(event, TrainingStepBatch):
        return _encode_steps(event)
    if name in BINARY_TYPES:
        return _encode_flat(event, name)
    body = _to_plain(event)
    for key in TIME_FIELDS & body.keys():
        if body[key] is not None:
            body[key] = to_iso(body[key])
    return _JSON_ENCODE({"type": name, "v": event.SCHEMA_VERSION, **body}).encode()


def decode(data: bytes) -> Event:
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise InvalidEvent("empty or non-bytes record")
    if data[:1] == b"{":
        return _decode_json(bytes(data))
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise InvalidEvent(f"not msgpack: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidEvent("invalid utf-8 in msgpack record") from exc
    if not isinstance(body, dict):
        raise InvalidEvent("binary record is not a map")
    name = body.pop("t", None)
    _check_version(name, body.pop("v", None))
    if name == "TelemetryBatch":
        return _decode_telemetry(body)
    if name == "TrainingStepBatch":
        return _decode_steps(body)
    if name not in BINARY_TYPES:
        raise InvalidEvent(f"type {name!r} is not sent in binary form")
    for key in TIME_FIELDS & body.keys():
        if body[key] is not None:
            body[key] = _check_ts(body[key], key)
    return _build(EVENT_TYPES[name], body)


# ----------------------------------------------------------------------------- telemetry


def _encode_telemetry(batch: TelemetryBatch) -> bytes:
    ts_ns = np.round(np.asarray(batch.ts, dtype=np.float64) * 1e9).astype("<i8")
    values = np.ascontiguousarray(batch.values, dtype="<f8")
    body = {
        "t": "TelemetryBatch",
        "v": TelemetryBatch.SCHEMA_VERSION,
        "host": batch.host,
        "cluster": batch.cluster,
        "ts": ts_ns.tobytes(),
        "series": list(batch.series),
        "values": values.tobytes(),
    }
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _decode_telemetry(body: dict[str, Any]) -> TelemetryBatch:
    host, cluster, series = body.get("host"), body.get("cluster"), body.get("series")
    raw_ts, raw_values = body.get("ts"), body.get("values")
    if not isinstance(host, str) or not host or not isinstance(cluster, str):
        raise InvalidEvent("TelemetryBatch.host/cluster must be non-empty strings")
    if not isinstance(series, list) or not all(isinstance(s, str) for s in series):
        raise InvalidEvent("TelemetryBatch.series must be a list of strings")
    if not isinstance(raw_ts, bytes) or not isinstance(raw_values, bytes):
        raise InvalidEvent("TelemetryBatch.ts (naive or non-epoch timestamp?) and .values must be bytes")
    if len(raw_ts) % 8 or not raw_ts:
        raise InvalidEvent("TelemetryBatch.ts has a partial or no int64")
    ts = np.frombuffer(raw_ts, dtype="<i8").astype(np.float64) / 1e9
    n_ts, n_series = ts.size, len(series)
    if len(raw_values) != n_ts * n_series * 8:
        raise InvalidEvent(f"TelemetryBatch.values has {len(raw_values)} bytes, expected {n_ts}x{n_series}x8")
    if ts.min() < _MIN_TS or ts.max() > _MAX_TS:
        raise InvalidEvent("TelemetryBatch.ts outside 2000..2100: not epoch nanoseconds")
    values = np.frombuffer(raw_values, dtype="<f8").reshape(n_ts, n_series)
    keys = tuple(series)
    counters = _counter_columns(keys)
    if counters.size and not np.isfinite(values[:, counters]).all():
        raise InvalidEvent("TelemetryBatch has a non-finite value in a counter (_total) series")
    return TelemetryBatch(host=host, cluster=cluster, ts=ts, series=keys, values=values)


@lru_cache(maxsize=4096)
def _counter_columns(series: tuple[str, ...]) -> np.ndarray:
    return np.array([i for i, s in enumerate(series) if s.partition("{")[0].endswith("_total")], dtype=np.intp)


# ----------------------------------------------------------------------------- training steps

# Wire dtype of each integer column (decoded to int64); every float column is little-endian float64.
_STEP_INTS = {"rank": "<i4", "step": "<i8", "host_index": "<i4", "gpu_index": "<i2"}
MAX_STEP_ROWS = 1_000_000  # rows in one TrainingStepBatch: a flush of 10^6 rank-steps is far beyond any trainer's


def _encode_steps(batch: TrainingStepBatch) -> bytes:
    body: dict[str, Any] = {
        "t": "TrainingStepBatch",
        "v": TrainingStepBatch.SCHEMA_VERSION,
        "job_id": batch.job_id,
        "cluster": batch.cluster,
        "hosts": list(batch.hosts),
        "ts": np.round(np.asarray(batch.ts, dtype=np.float64) * 1e9).astype("<i8").tobytes(),
    }
    for name, dtype in _STEP_INTS.items():
        body[name] = np.ascontiguousarray(getattr(batch, name), dtype=dtype).tobytes()
    for name in TrainingStepBatch.FLOATS:
        body[name] = np.ascontiguousarray(getattr(batch, name), dtype="<f8").tobytes()
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _column(body: dict[str, Any], name: str, dtype: str, rows: int) -> np.ndarray:
    raw = body.pop(name, None)
    if not isinstance(raw, bytes):
        raise InvalidEvent(f"TrainingStepBatch.{name} is missing or not bytes")
    if len(raw) != rows * np.dtype(dtype).itemsize:
        raise InvalidEvent(f"TrainingStepBatch.{name} has {len(raw)} bytes for {rows} rows of {dtype}")
    return np.frombuffer(raw, dtype=dtype)


def _decode_steps(body: dict[str, Any]) -> TrainingStepBatch:
    job, cluster, hosts = body.pop("job_id", None), body.pop("cluster", None), body.pop("hosts", None)
    if not isinstance(job, str) or not job or not isinstance(cluster, str):
        raise InvalidEvent("TrainingStepBatch.job_id/cluster must be strings (job_id non-empty)")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise InvalidEvent("TrainingStepBatch.hosts must be a non-empty list of non-empty strings")
    raw_ts = body.get("ts")
    rows = len(raw_ts) // 8 if isinstance(raw_ts, bytes) else 0
    if not 1 <= rows <= MAX_STEP_ROWS:
        raise InvalidEvent(f"TrainingStepBatch has {rows} rows (1..{MAX_STEP_ROWS})")
    ts = _column(body, "ts", "<i8", rows).astype(np.float64) / 1e9
    if ts.min() < _MIN_TS or ts.max() > _MAX_TS:
        raise InvalidEvent("TrainingStepBatch.ts outside 2000..2100: not epoch nanoseconds")
    cols: dict[str, Any] = {n: _column(body, n, d, rows).astype(np.int64) for n, d in _STEP_INTS.items()}
    cols |= {n: _column(body, n, "<f8", rows).astype(np.float64) for n in TrainingStepBatch.FLOATS}
    if body:
        raise InvalidEvent(f"TrainingStepBatch has unknown fields {sorted(body)}")
    _check_step_ranges(cols, len(hosts))
    return TrainingStepBatch(job_id=job, cluster=cluster, hosts=tuple(hosts), ts=ts, **cols)


def _check_step_ranges(cols: dict[str, Any], hosts: int) -> None:
    """The same limits as a single TrainingStep's (``LIMITS``), for every row at once."""
    bounds = {
        **{n: LIMITS[n] for n in ("rank", "step", "step_time_s", "compute_time_s")},
        "host_index": (0, hosts - 1),
        "gpu_index": (-1, LIMITS["gpu_index"][1]),
    }
    for name, (low, high) in bounds.items():
        values = cols[name]
        bad = ~((values >= low) & (values <= high))
        if name in _MAY_BE_NAN:
            bad &= ~np.isnan(values)
        if bad.any():
            raise InvalidEvent(f"TrainingStepBatch.{name}: {values[bad][0].item()!r} is outside {low}..{high}")


# ----------------------------------------------------------------------------- generic events


def _check_version(name: object, version: object) -> None:
    if not isinstance(name, str) or name not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {name!r}")
    expected = EVENT_TYPES[name].SCHEMA_VERSION
    if version != expected:
        raise InvalidEvent(f"{name} schema version {version!r} is not supported (expected {expected})")


def _decode_json(data: bytes) -> Event:
    try:
        body = _JSON_DECODE(
            data.decode("utf-8") if isinstance(data, bytes | bytearray) else bytes(data).decode("utf-8")
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidEvent("JSON record is not an object")
    name = body.pop("type", None)
    _check_version(name, body.pop("v", None))
    for key in TIME_FIELDS & body.keys():
        value = body[key]
        if value is not None:
            if not isinstance(value, str):
                raise InvalidEvent(f"{name}.{key} must be an ISO-8601 string")
            body[key] = _in_time_range(from_iso(value), f"{name}.{key}", value)
    return _build(EVENT_TYPES[name], body)


def _reject_constant(token: str) -> float:
    raise InvalidEvent(f"non-finite number {token} in JSON")


# Built once: json.loads/json.dumps with arguments build a new decoder or encoder on every call, which
# was a third of decoding a detection.
_JSON_DECODE = json.JSONDecoder(parse_constant=_reject_constant).decode
_JSON_ENCODE = json.JSONEncoder(allow_nan=False).encode


def _check_ts(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{key} must be int64 epoch nanoseconds, got {type(value).__name__}")
    seconds = value / 1e9
    if not _MIN_TS <= seconds <= _MAX_TS:
        raise InvalidEvent(f"{key} outside 2000..2100: not epoch nanoseconds")
    return seconds


def _in_time_range(seconds: float, where: str, text: str) -> float:
    if not _MIN_TS <= seconds <= _MAX_TS:
        raise InvalidEvent(f"{where} {text!r} is outside 2000-01-01..2100-01-01")
    return seconds


def _in_limits(where: str, name: str, value: float) -> None:
    """Raise unless ``value`` lies within ``LIMITS[name]`` (fields without a limit pass)."""
    bounds = LIMITS.get(name)
    if bounds is None or (value != value and name in _MAY_BE_NAN):  # NaN: not measured
        return
    low, high = bounds
    if not low <= value <= high:  # NaN fails this too
        raise InvalidEvent(f"{where}: {value!r} is outside {low}..{high}")


# Binary events other than telemetry are flat (scalars only): their field names, resolved once,
# let encode skip dataclasses.fields() per event (a training job sends one per rank per step).
_FLAT_FIELDS: dict[str, tuple[tuple[str, bool], ...]] = {
    name: tuple((f.name, f.name in TIME_FIELDS) for f in dataclasses.fields(EVENT_TYPES[name]))
    for name in BINARY_TYPES - COLUMNAR
}


def _encode_flat(event: Any, name: str) -> bytes:
    body: dict[str, Any] = {"t": name, "v": event.SCHEMA_VERSION}
    for field, is_time in _FLAT_FIELDS[name]:
        value = getattr(event, field)
        body[field] = round(value * 1e9) if is_time and value is not None else value
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def _to_plain(event: Any) -> dict[str, Any]:
    body = {}
    for name, *_ in _PLANS[type(event).__name__]:
        value = getattr(event, name)
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = [dataclasses.asdict(v) for v in value]
        elif isinstance(value, Mapping):
            value = dict(value)
        body[name] = value
    return body


# Values nested inside events (a tuple of them is a field), decoded with the same checks as events.
NESTED_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in (StepState, ProbeItem)}
# Resolved once: the dataclasses use postponed annotations, and decode must not re-resolve per record.
_HINTS: dict[str, dict[str, Any]] = {
    name: typing.get_type_hints(cls) for name, cls in {**EVENT_TYPES, **NESTED_TYPES}.items()
}


def _plan(hint: Any) -> tuple[bool, Any]:
    """(may be None, the type otherwise), resolved once per field instead of once per record."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return type(None) in args, next(a for a in args if a is not type(None))
    return False, hint


# Per event (and nested) type: (field, required, may be None, type), so decoding a record walks a prepared list.
_PLANS: dict[str, tuple[tuple[str, bool, bool, Any], ...]] = {
    name: tuple(
        (
            f.name,
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            *_plan(_HINTS[name][f.name]),
        )
        for f in dataclasses.fields(cls)
    )
    for name, cls in {**EVENT_TYPES, **NESTED_TYPES}.items()
}


def _build(cls: type[Any], body: dict[str, Any]) -> Event:
    owner = cls.__name__
    kwargs: dict[str, Any] = {}
    for name, required, optional, hint in _PLANS[owner]:
        if name not in body:
            if required:
                raise InvalidEvent(f"{owner}.{name} is missing")
            continue
        value = body.pop(name)
        kwargs[name] = None if value is None and optional else _coerce(owner, name, hint, value)
    if body:
        raise InvalidEvent(f"{cls.__name__} has unknown fields {sorted(body)}")
    event: Event = cls(**kwargs)
    return event


def _coerce(owner: str, name: str, hint: Any, value: Any) -> Any:
    if hint is str and isinstance(value, str):  # the common case first, before any message is formatted
        return value
    where = f"{owner}.{name}"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(owner, name, inner[0], value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent(f"{where} must be a number")
        _in_limits(where, name, float(value))
        return float(value)
    if hint is int:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEvent(f"{where}: {value} where a count belongs")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidEvent(f"{where} must be an integer")
        _in_limits(where, name, value)
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise InvalidEvent(f"{where} must be {hint.__name__}")
        return value
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise InvalidEvent(f"{where}: {value!r} not one of {typing.get_args(hint)}")
        return value
    if origin in (Mapping, dict):
        if not isinstance(value, dict):
            raise InvalidEvent(f"{where} must be a mapping")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise InvalidEvent(f"{where} must be a list of objects")
        return tuple(_build(item, dict(v)) for v in value)
    raise InvalidEvent(f"{where}: unsupported type {hint}")
