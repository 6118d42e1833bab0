"""Line protocol for the Influx sink, checked against the line protocol spec
(https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/): which characters are escaped
where, float and timestamp syntax, and what cannot be written at all. The same escapes round-trip through
the real InfluxDB 1.x and VictoriaMetrics in tests/integration/test_sink_stores.py."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from vigil.sinks.lines import TelemetryLines, detection_line, series_prefix

from vigil.errors import InvalidEvent
from vigil.events import Detection, TelemetryBatch, series_key

T0 = 1_796_500_000.0  # 2026-12-05, a whole second: its nanoseconds are exact


def batch(series: list[str], values: list[list[float]], host: str = "node-01", cluster: str = "dc1") -> TelemetryBatch:
    ts = T0 + np.arange(len(values), dtype=np.float64)
    return TelemetryBatch(host, cluster, ts, tuple(series), np.array(values, dtype=np.float64))


# ---------------------------------------------------------------- a reader written from the spec


def _split(text: str, seps: str) -> list[str]:
    """Split on any of ``seps`` not preceded by a backslash escape (the spec's rule for unquoted parts)."""
    out, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
        elif text[i] in seps:
            out.append(cur)
            cur = ""
            i += 1
        else:
            cur += text[i]
            i += 1
    return [*out, cur]


def _unescape(text: str, chars: str) -> str:
    return re.sub(r"\\([" + re.escape(chars) + "])", r"\1", text)


def read_line(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """measurement, tags, fields, timestamp of one line, by the spec: the measurement escapes ``,`` and
    space; tag keys, tag values and field keys escape ``,``, ``=`` and space; string field values are
    double-quoted and escape ``"`` and ``\\``; floats are bare numbers, integers end in ``i``."""
    head, fields_text, stamp = _split_outside_quotes(line)
    measurement, *tag_parts = _split(head, ",")
    tags = {}
    for part in tag_parts:
        key, value = _split(part, "=")
        tags[_unescape(key, ", =")] = _unescape(value, ", =")
    fields: dict[str, object] = {}
    for part in _split_fields(fields_text):
        key, _, value = part.partition("=") if "\\=" not in part else _partition_escaped(part)
        name = _unescape(key, ", =")
        if value.startswith('"'):
            fields[name] = re.sub(r'\\(["\\])', r"\1", value[1:-1])
        elif value.endswith("i"):
            fields[name] = int(value[:-1])
        else:
            fields[name] = float(value)
    return _unescape(measurement, ", "), tags, fields, int(stamp)


def _partition_escaped(part: str) -> tuple[str, str, str]:
    key, value = _split(part, "=")[0], part[len(_split(part, "=")[0]) + 1 :]
    return key, "=", value


def _split_outside_quotes(line: str) -> tuple[str, str, str]:
    """The three space-separated sections; spaces inside a quoted string field do not count."""
    parts, cur, quoted, i = [], "", False, 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur += line[i : i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == " " and not quoted and len(parts) < 2:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    head, fields_text, stamp = parts
    return head, fields_text, stamp


def _split_fields(text: str) -> list[str]:
    out, cur, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    return [*out, cur]


# ---------------------------------------------------------------- telemetry


def test_one_line_per_sample_with_labels_host_cluster_value_and_nanoseconds() -> None:
    got = TelemetryLines().encode(
        batch([series_key("gpu_temperature_celsius", {"gpu_index": "0"}), "host_load1"], [[65.5, 1.25], [66.0, 2.0]])
    )
    assert got.body.decode().splitlines() == [
        "gpu_temperature_celsius,cluster=dc1,gpu_index=0,host=node-01 value=65.5 1796500000000000000",
        "host_load1,cluster=dc1,host=node-01 value=1.25 1796500000000000000",
        "gpu_temperature_celsius,cluster=dc1,gpu_index=0,host=node-01 value=66.0 1796500001000000000",
        "host_load1,cluster=dc1,host=node-01 value=2.0 1796500001000000000",
    ]
    assert (got.lines, got.skipped) == (4, 0) and got.body.endswith(b"\n")


def test_the_batch_names_host_and_cluster_over_a_series_label_of_the_same_name() -> None:
    line = TelemetryLines().encode(batch([series_key("m", {"host": "other", "x": "1"})], [[1.0]])).body.decode()
    assert read_line(line.strip())[1] == {"cluster": "dc1", "host": "node-01", "x": "1"}


def test_escaping_of_measurement_tag_keys_and_tag_values_follows_the_spec() -> None:
    # (A series key's label names cannot hold "=" or ","; detections' label names can: tested below.)
    series = series_key("disk read,x=1", {"sp ace": "a b,c=d", "back": "c:\\temp"})
    body = TelemetryLines().encode(batch([series], [[1.5]], host="node 1", cluster="dc,=1")).body.decode()
    # The measurement escapes comma and space but not '='; tag keys and values escape all three;
    # a backslash not before one of those stays as it is.
    assert body == (
        "disk\\ read\\,x=1,back=c:\\temp,cluster=dc\\,\\=1,host=node\\ 1,sp\\ ace=a\\ b\\,c\\=d"
        " value=1.5 1796500000000000000\n"
    )
    measurement, tags, fields, stamp = read_line(body.strip())
    assert measurement == "disk read,x=1"
    assert tags == {"back": "c:\\temp", "cluster": "dc,=1", "host": "node 1", "sp ace": "a b,c=d"}
    assert fields == {"value": 1.5} and stamp == 1_796_500_000_000_000_000


@pytest.mark.parametrize(
    "value", [0.1, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 72296680206.09503, 2**53 + 0.0]
)
def test_values_are_written_as_the_shortest_text_that_reads_back_exactly(value: float) -> None:
    line = TelemetryLines().encode(batch(["m"], [[value]])).body.decode().strip()
    fields = read_line(line)[2]
    assert fields["value"] == value and math.copysign(1, fields["value"]) == math.copysign(1, value)  # type: ignore[arg-type]


def test_nan_and_infinities_are_skipped_and_counted() -> None:
    got = TelemetryLines().encode(batch(["a", "b"], [[math.nan, 1.0], [math.inf, -math.inf]]))
    assert got.body == b"a,cluster=dc1,host=node-01 value=1.0 1796500000000000000\n".replace(b"a,", b"b,")
    assert (got.lines, got.skipped) == (1, 3)
    empty = TelemetryLines().encode(batch(["a"], [[math.nan]]))
    assert (empty.body, empty.lines, empty.skipped) == (b"", 0, 1)


def test_prefixes_are_built_once_per_series_set_and_the_cache_is_bounded() -> None:
    lines = TelemetryLines(max_sets=2)
    first = lines.prefixes(batch(["a", "b"], [[1, 2]]))
    assert lines.prefixes(batch(["a", "b"], [[3, 4]])) is first  # an equal tuple from another decode
    lines.prefixes(batch(["a"], [[1]], host="node-02"))
    lines.prefixes(batch(["a"], [[1]], host="node-03"))
    assert len(lines._prefixes) <= 2


@pytest.mark.parametrize("metric", ["", "#comment"])
def test_a_metric_name_line_protocol_cannot_hold_is_invalid(metric: str) -> None:
    with pytest.raises(InvalidEvent, match="measurement"):
        series_prefix(metric, {})


def test_a_tag_value_ending_in_a_backslash_gets_the_librarys_trailing_space() -> None:
    # Line protocol cannot end a tag value with a backslash (it would escape the separator); influxdb-client
    # appends a space, and both real stores then hold "k " (tests/integration/test_sink_stores.py).
    assert series_prefix("m", {"t": "k\\"}) == b"m,t=k\\  value="


# ---------------------------------------------------------------- detections


def detection(**over: object) -> Detection:
    base: dict[str, object] = dict(
        ts=T0 + 0.5,
        detector="zscore",
        series='GpuHot{gpu_index="3",host="node-01"}',
        labels={"alertname": "GpuHot", "host": "node 01", "gpu,index=": "3", "decision": "not this one"},
        score=7.25,
        decision="firing",
        severity="warning",
        reason={"metric": "gpu_temperature_celsius", "z": 7.25},
        window_start=T0 - 10,
        window_end=T0 + 0.5,
        summary='GPU 3 "hot" at C:\\path',
    )
    base.update(over)
    return Detection(**base)  # type: ignore[arg-type]


def test_a_detection_is_one_point_with_identity_tags_and_numeric_and_string_fields() -> None:
    line = detection_line(detection()).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    measurement, tags, fields, stamp = read_line(line.strip())
    assert measurement == "vigil_detection" and stamp == 1_796_500_000_500_000_000
    assert tags == {
        "alertname": "GpuHot",
        "decision": "firing",  # the detection's own decision over a label of that name
        "detector": "zscore",
        "entity": 'GpuHot{gpu_index="3",host="node-01"}',
        "gpu,index=": "3",  # a label name with a comma and '=': escaped as a tag key
        "host": "node 01",
        "severity": "warning",
    }
    assert fields["score"] == 7.25 and fields["firing"] == 1.0
    assert fields["window_start"] == T0 - 10 and fields["window_end"] == T0 + 0.5
    assert fields["summary"] == 'GPU 3 "hot" at C:\\path'  # quotes and backslash escaped inside the string
    assert json.loads(str(fields["reason"])) == {"metric": "gpu_temperature_celsius", "z": 7.25}
    assert '\\"hot\\" at C:\\\\path' in line and "gpu\\,index\\==3" in line


def test_a_resolved_detection_with_a_nan_score_keeps_its_firing_field() -> None:
    fields = read_line(detection_line(detection(decision="resolved", score=math.nan, summary="")).decode().strip())[2]
    assert "score" not in fields and "summary" not in fields and fields["firing"] == 0.0


def test_line_breaks_in_a_string_field_never_end_the_line() -> None:
    # influxdb-client leaves them raw inside the quotes; VictoriaMetrics splits the body on newlines first
    # and would read "second line..." as a point of its own (it did, before this).
    line = detection_line(detection(summary="first\nsecond\r\nthird\rfourth"))
    assert line.count(b"\n") == 1 and b"\r" not in line
    assert read_line(line.decode().strip())[2]["summary"] == "first\\nsecond\\nthird\\rfourth"
