"""The sink's writes against the real stores on loopback: VictoriaMetrics through the InfluxDB v2 write API,
Debian's InfluxDB 1.6 through the v1 ``/write``. Escaped names, tags and string fields round-trip; values and
nanosecond timestamps come back exact; refusals, credentials and outages map to the right errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from vigil.sinks.config import InfluxConfig
from vigil.sinks.lines import TelemetryLines, detection_line
from vigil.sinks.store import InfluxStore, StoreRejected, StoreUnavailable

from tests.stores import InfluxDB1, export, poll
from vigil.cli.victoria import VictoriaMetrics
from vigil.events import Detection, TelemetryBatch, series_key

pytestmark = pytest.mark.integration

LABELS = {"sp ace": "a b,c=d", "back": "c:\\temp", "trail": "k\\", 'quo"te': 'say "x"'}
STORED_LABELS = {**LABELS, "trail": "k "}  # a tag value cannot end in a backslash: the library's space stays


def special_batch(t0: float) -> TelemetryBatch:
    series = (series_key("disk read,x=1", {k: v for k, v in LABELS.items() if '"' not in k + v}), "host_load1")
    values = np.array([[0.1, 1e-300], [72296680206.09503, -0.0]])
    return TelemetryBatch("node 1", "dc,=1", np.array([t0, t0 + 1.0]), series, values)


def special_detection(t0: float) -> Detection:
    labels = {"alertname": "Gpu Hot", "gpu,index=": "3", **LABELS}
    summary = 'GPU 3 "hot", see C:\\runbooks\\gpu.md\nsecond line'
    series, reason = 'GpuHot{gpu_index="3"}', {"z": 7.5}
    return Detection(t0 + 0.25, "zscore", series, labels, 7.5, "firing", "warning", reason, t0 - 10, t0 + 0.25, summary)


def body(t0: float) -> bytes:
    return TelemetryLines().encode(special_batch(t0)).body + detection_line(special_detection(t0))


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path_factory.mktemp("vm")) as vm:
        yield vm


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxDB1]:
    server = InfluxDB1(tmp_path / "influx").start()
    try:
        yield server
    finally:
        server.stop()


def v1(server: InfluxDB1, **over: object) -> InfluxConfig:
    return InfluxConfig(url=server.url, api="v1", database="vigil", **over)  # type: ignore[arg-type]


def test_escaped_lines_round_trip_through_victoriametrics(victoria: VictoriaMetrics) -> None:
    t0 = float(int(time.time()) - 60)
    InfluxStore(InfluxConfig(url=victoria.url, org="o", bucket="b")).write(body(t0))
    wanted = {"disk read,x=1", "host_load1", "vigil_detection_score", "vigil_detection_firing"}

    def written() -> dict[str, dict[str, Any]]:
        rows = export(victoria.url, '{__name__=~"disk read,x=1|host_load1|vigil_detection_.*"}')
        by_name = {row["metric"]["__name__"]: row for row in rows}
        return by_name if wanted <= by_name.keys() else {}

    by_name: dict[str, dict[str, Any]] = poll(written, 30, "every series exported")  # type: ignore[assignment]
    disk = by_name["disk read,x=1"]
    expected = {k: v for k, v in STORED_LABELS.items() if '"' not in k + LABELS[k]}
    assert disk["metric"] == {"__name__": "disk read,x=1", "cluster": "dc,=1", "host": "node 1", **expected}
    # VictoriaMetrics keeps values as decimals of about 15 significant digits (InfluxDB 1.x: exact, below).
    assert disk["values"] == pytest.approx([0.1, 72296680206.09503], rel=1e-13)
    assert disk["timestamps"] == [int(t0 * 1000), int(t0 * 1000) + 1000]
    assert by_name["host_load1"]["values"] == pytest.approx([1e-300, -0.0], rel=1e-13)
    score = by_name["vigil_detection_score"]
    # Event times are float seconds (DESIGN §3): t0 + 0.25 s is ...249999872 ns, and VictoriaMetrics keeps ms.
    assert score["values"] == [7.5] and score["timestamps"] == [round((t0 + 0.25) * 1e9) // 10**6]
    assert {k: score["metric"][k] for k in ("gpu,index=", "alertname", 'quo"te', "entity", "decision")} == {
        "gpu,index=": "3",
        "alertname": "Gpu Hot",
        'quo"te': 'say "x"',
        "entity": 'GpuHot{gpu_index="3"}',
        "decision": "firing",
    }
    assert by_name["vigil_detection_firing"]["values"] == [1.0]


def test_escaped_lines_round_trip_through_influxdb_1(influx: InfluxDB1) -> None:
    influx.query("CREATE DATABASE vigil")
    t0 = float(int(time.time()) - 60)
    InfluxStore(v1(influx)).write(body(t0))
    names = [row[0] for row in influx.query("SHOW MEASUREMENTS", "vigil")[0]["values"]]
    assert sorted(names) == ["disk read,x=1", "host_load1", "vigil_detection"]
    (disk,) = influx.query('SELECT * FROM "disk read,x=1"', "vigil")
    rows = [dict(zip(disk["columns"], values, strict=True)) for values in disk["values"]]
    expected = {k: v for k, v in STORED_LABELS.items() if '"' not in k + LABELS[k]}
    assert rows == [
        {"time": round(t0 * 1e9), "value": 0.1, "cluster": "dc,=1", "host": "node 1", **expected},
        {"time": round(t0 * 1e9) + 10**9, "value": 72296680206.09503, "cluster": "dc,=1", "host": "node 1", **expected},
    ]
    (det,) = influx.query("SELECT * FROM vigil_detection", "vigil")
    (row,) = [dict(zip(det["columns"], values, strict=True)) for values in det["values"]]
    assert row["time"] == round((t0 + 0.25) * 1e9)  # the nanoseconds written, exact
    # The newline of a string field is written as the two characters \n, and InfluxDB 1.6 keeps them so.
    assert row["summary"] == 'GPU 3 "hot", see C:\\runbooks\\gpu.md\\nsecond line'
    assert json.loads(row["reason"]) == {"z": 7.5} and row["score"] == 7.5 and row["firing"] == 1.0
    assert (row["gpu,index="], row['quo"te'], row["entity"]) == ("3", 'say "x"', 'GpuHot{gpu_index="3"}')


def test_a_field_type_conflict_is_a_refusal_of_the_data(influx: InfluxDB1) -> None:
    influx.query("CREATE DATABASE vigil")
    now = time.time_ns()
    httpx.post(f"{influx.url}/write", params={"db": "vigil"}, content=f"host_load1 value=1i {now}").raise_for_status()
    batch = TelemetryBatch("n", "c", np.array([now / 1e9]), ("host_load1",), np.array([[1.5]]))
    with pytest.raises(StoreRejected, match="field type conflict"):
        InfluxStore(v1(influx)).write(TelemetryLines().encode(batch).body)


def test_influxdb_1_credentials_are_sent_as_basic_auth(tmp_path: Path) -> None:
    server = InfluxDB1(tmp_path / "auth", auth=True).start()
    try:
        server.query("CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES")  # the first user needs none
        server.query("CREATE DATABASE vigil", auth=("admin", "s3cret"))
        line = TelemetryLines().encode(TelemetryBatch("n", "c", np.array([time.time()]), ("m",), np.array([[2.0]])))
        InfluxStore(v1(server, username="admin", password="s3cret")).write(line.body)
        assert server.query("SELECT value FROM m", "vigil", auth=("admin", "s3cret"))[0]["values"][0][1] == 2.0
        with pytest.raises(StoreUnavailable, match="401"):  # an operator must fix it: retried, never dropped
            InfluxStore(v1(server, username="admin", password="wrong")).write(line.body)
    finally:
        server.stop()


def test_a_store_that_is_down_is_retried_with_backoff_until_it_answers(tmp_path: Path) -> None:
    vm = VictoriaMetrics(tmp_path / "vm")  # not started yet: connections are refused
    retries: list[float] = []
    retry = {"max_retries": 30, "initial": 0.2, "max_delay": 1.0, "max_time": 60}
    config = InfluxConfig(url=vm.url, retry=retry)  # type: ignore[arg-type]
    store = InfluxStore(config, on_retry=lambda: retries.append(time.monotonic()))
    batch = TelemetryBatch("n", "c", np.array([time.time()]), ("m",), np.array([[3.0]]))
    starter = threading.Timer(1.5, vm.start)
    starter.start()
    try:
        started = time.monotonic()
        store.write(TelemetryLines().encode(batch).body)
        assert time.monotonic() - started >= 1.5 and len(retries) >= 3
        # WritesRetry waits a random time in [0.2, 0.4) s after the first failure, [0.4, 0.8) after the second...
        waits = np.diff(retries)
        assert 0.2 <= waits[0] < 0.4 + 0.2 and waits[1] > waits[0]
        assert export(vm.url, "m") or poll(lambda: export(vm.url, "m"), 30, "the retried write")
    finally:
        starter.join()
        vm.stop()
    few = InfluxConfig(url=vm.url, retry={"max_retries": 2, "initial": 0.05, "max_delay": 0.1})  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable, match="did not confirm"):
        InfluxStore(few).write(b"m value=1\n")
