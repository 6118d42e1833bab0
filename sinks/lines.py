"""Events as InfluxDB line protocol (precision ns), escaped by influxdb-client's ``Point``.

Telemetry: one line per finite sample, ``<metric>,<labels>,cluster=<c>,host=<h> value=<v> <ns>``. The
escaped prefix of each series (everything before the value) is built once with ``Point`` and cached
per host's series set; a batch then costs one vectorised pass: orjson formats the whole value array
(shortest round-trip decimal, in C), and the lines are joined in C from the cached prefixes, the
value texts and one timestamp per tick. No Python code runs per sample: NaN and infinities (which
line protocol cannot hold) are cut with a numpy mask and counted.

Detections: one point per Detection in the measurement ``vigil_detection``: tags ``detector``,
``entity`` (the detection's series), ``decision``, ``severity`` and its labels; fields ``score``,
``firing`` (1 or 0), ``window_start`` and ``window_end`` (epoch seconds), ``summary`` and ``reason``
(JSON), the last two strings (VictoriaMetrics stores numeric fields only) without line breaks.

Escaping is the library's: measurement commas and spaces; tag keys, tag values and field keys commas,
``=`` and spaces; string field values ``"`` and ``\\``. One case line protocol cannot express in a
tag value: a trailing backslash (it would escape the separator); the library appends a space, so
``a\\`` is stored as ``a\\ `` -> ``a `` (the real servers' tests show it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson
from influxdb_client import Point, WritePrecision

from vigil.errors import InvalidEvent
from vigil.events import Detection, TelemetryBatch, parse_series_key

FIELD = "value"
DETECTION_MEASUREMENT = "vigil_detection"
_ZERO_FIELD = f" {FIELD}=0"  # how Point ends a line whose only field is value=0.0


def series_prefix(metric: str, tags: dict[str, str]) -> bytes:
    """``<measurement>[,<tags>] value=`` with the library's escaping; the value and time follow."""
    if not metric or metric.startswith("#"):  # an empty measurement, or a line read as a comment
        raise InvalidEvent(f"metric name {metric!r} cannot be a line protocol measurement")
    point = Point(metric).field(FIELD, 0.0)
    for key, value in tags.items():
        point.tag(key, value)
    line = point.to_line_protocol()
    if not line.endswith(_ZERO_FIELD):  # the library changed how it writes a float field
        raise AssertionError(f"unexpected line from influxdb-client: {line!r}")
    return str(line[:-1]).encode()


@dataclass(frozen=True, slots=True)
class Encoded:
    body: bytes  # newline-terminated lines
    lines: int
    skipped: int  # samples line protocol cannot hold (NaN, infinities)


class TelemetryLines:
    """Encodes ``TelemetryBatch`` es; remembers the escaped prefixes of up to ``max_sets`` series sets."""

    def __init__(self, max_sets: int = 4096) -> None:
        self._max_sets = max_sets
        self._prefixes: dict[tuple[str, str, tuple[str, ...]], npt.NDArray[np.object_]] = {}

    def prefixes(self, batch: TelemetryBatch) -> npt.NDArray[np.object_]:
        """The escaped prefix of each series of the batch (host and cluster win over series labels)."""
        key = (batch.cluster, batch.host, batch.series)
        found = self._prefixes.get(key)
        if found is None:
            if len(self._prefixes) >= self._max_sets:  # a churning fleet: start again rather than grow
                self._prefixes.clear()
            found = np.empty(len(batch.series), dtype=object)
            for i, series in enumerate(batch.series):
                metric, labels = parse_series_key(series)
                found[i] = series_prefix(metric, {**labels, "cluster": batch.cluster, "host": batch.host})
            self._prefixes[key] = found
        return found

    def encode(self, batch: TelemetryBatch) -> Encoded:
        prefixes = self.prefixes(batch)
        width = batch.values.shape[1]
        flat = np.ascontiguousarray(batch.values, dtype=np.float64).reshape(-1)
        keep = np.flatnonzero(np.isfinite(flat))
        if keep.size == 0:
            return Encoded(b"", 0, flat.size)
        stamps = np.array([b" %d\n" % ns for ns in np.round(batch.ts * 1e9).astype(np.int64).tolist()], dtype=object)
        values = orjson.dumps(flat[keep], option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
        parts: list[bytes] = [b""] * (3 * keep.size)
        parts[0::3] = prefixes[keep % width].tolist()
        parts[1::3] = values
        parts[2::3] = stamps[keep // width].tolist()
        return Encoded(b"".join(parts), int(keep.size), int(flat.size - keep.size))


def one_line(text: str) -> str:
    """A string field without line breaks, which the library leaves raw: a reader that splits the body on
    newlines first (VictoriaMetrics) would cut the line there. They become the two characters ``\\n``,
    as the library writes them in tags."""
    return text.replace("\r\n", "\n").replace("\r", "\\r").replace("\n", "\\n")


def detection_line(det: Detection) -> bytes:
    """One point for a Detection, newline-terminated."""
    point = Point(DETECTION_MEASUREMENT).time(round(det.ts * 1e9), WritePrecision.NS)
    for key, value in det.labels.items():
        point.tag(key, value)
    fixed = {"detector": det.detector, "entity": det.series, "decision": det.decision, "severity": det.severity}
    for key, value in fixed.items():  # over any label of the same name: these identify the point
        point.tag(key, value)
    point.field("score", float(det.score))  # Point leaves out a NaN score; `firing` is always there
    point.field("firing", 1.0 if det.decision == "firing" else 0.0)
    point.field("window_start", float(det.window_start)).field("window_end", float(det.window_end))
    if det.summary:
        point.field("summary", one_line(det.summary))
    point.field("reason", json.dumps(det.reason, sort_keys=True, default=str))
    return str(point.to_line_protocol()).encode() + b"\n"
