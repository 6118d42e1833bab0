"""The real ``vigil sink influx`` process between a real broker and a real VictoriaMetrics: SIGKILLed mid-run
and restarted, across a store outage and across a broker crash, it leaves no gap in any written series
(every tick of every series is read back from the store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTP
from vigil.collectors.sim import FleetSimulator
from vigil.collectors.sim.config import SimConfig

from tests.stores import export, poll
from vigil.broker import EmbeddedBroker, free_port
from vigil.bus.kafka import KafkaBus, KafkaBusProducer
from vigil.bus.retry import RenewableProducer
from vigil.cli.victoria import VictoriaMetrics
from vigil.codec import decode, encode
from vigil.config import KafkaConfig
from vigil.errors import RetryableError
from vigil.events import TelemetryBatch
from vigil.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLEET = SimConfig(nodes=2, spare_nodes=0, gpus_per_node=2, schedule="none", training=False)
SERIES_PER_TICK = 2 * (2 * 8 + 5)  # 2 hosts x (2 GPUs x 8 GPU metrics + 5 host metrics)


class Publisher:
    """The simulated fleet's telemetry, ``rate`` ticks a second of simulated time starting ten minutes ago
    (inside VictoriaMetrics' retention), each tick sent again on a new producer until the broker has it."""

    def __init__(self, kafka: KafkaConfig, topics: Topics, rate: float = 20.0) -> None:
        self.kafka, self.topics, self.rate = kafka, topics, rate
        self.t0 = float(int(time.time()) - 600)
        self.sim = FleetSimulator(FLEET, self.t0)
        self.ticks = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        producer = RenewableProducer(partial(KafkaBusProducer, self.kafka))
        while not self.stop.is_set():
            out = self.sim.tick(self.t0 + self.ticks)
            while not self.stop.is_set():
                try:
                    for batch in out.telemetry:
                        producer.send(self.topics.telemetry, encode(batch), key=batch.host.encode())
                    producer.flush(5)
                    break
                except RetryableError:
                    producer.renew(0.1)
                    time.sleep(0.5)
            self.ticks += 1
            time.sleep(1 / self.rate)
        producer.close(1)

    def finish(self) -> int:
        self.stop.set()
        self._thread.join(30)
        return self.ticks


class Sink:
    """``vigil sink influx`` as a child process with its own config file; stopped by its PID."""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder, self.port = folder, free_port()
        self.path = folder / "sink.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Sink:
        self.starts += 1
        log = (self.folder / f"sink-{self.starts}.log").open("wb")
        argv = [sys.executable, "-m", "vigil.cli", "sink", "influx", "-c", str(self.path)]
        self.proc = subprocess.Popen([*argv, "--metrics-port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        return self

    def metric(self, name: str, labels: str = "") -> float:
        for line in httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        return 0.0

    def written(self) -> float:
        return self.metric("vigil_sink_points_written_total", '{stream="telemetry"}')

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.folder.glob("sink-*.log")))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path / "vm") as vm:
        yield vm


def sink_config(bootstrap: str, unique: str, url: str, **influx: object) -> dict[str, Any]:
    return {
        "log_level": "info",
        "kafka": {"bootstrap_servers": [bootstrap], "topics": {"prefix": f"sink{unique}"}, "request_timeout": "10s"},
        "sink": {"influx": {"url": url, "group": f"sink-{unique}", **influx}},
    }


def no_gap(vm: VictoriaMetrics, t0: float, ticks: int) -> dict[str, int]:
    """Every series of the fleet has every tick 0..ticks-1; returns {} until then (missing counts per series)."""
    rows = export(vm.url, '{host=~"node-.*"}', start=t0 - 1)
    wanted = {int((t0 + k) * 1000) for k in range(ticks)}
    missing = {str(row["metric"]): len(wanted - set(row["timestamps"])) for row in rows}
    if len(rows) == SERIES_PER_TICK and not any(missing.values()):
        return {}
    missing["series"] = len(rows)
    return missing


def wait_complete(vm: VictoriaMetrics, publisher: Publisher, ticks: int, sink: Sink) -> None:
    last: dict[str, int] = {}

    def complete() -> bool:
        nonlocal last
        last = no_gap(vm, publisher.t0, ticks)
        return not last

    try:
        poll(complete, 120, "every tick of every series in the store", every_s=1.0)
    except BaseException:
        print(sink.logs())
        print({k: v for k, v in last.items() if v})
        raise


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset of each partition of the topic, read without joining the group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(KafkaTP(topic, p)) or 0 for p in range(partitions)}
    finally:
        consumer.close()


def samples_below(bootstrap: str, topic: str, offsets: dict[int, int]) -> set[tuple[str, int]]:
    """(host, ms timestamp) of every telemetry sample in the records below ``offsets``, read from the broker."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    wanted = [KafkaTP(topic, p) for p, offset in offsets.items() if offset > 0]
    consumer.assign(wanted)
    consumer.seek_to_beginning(*wanted)
    out: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 60
    try:
        while any(consumer.position(tp) < offsets[tp.partition] for tp in wanted) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset < offsets[tp.partition]:
                        batch = decode(record.value)
                        assert isinstance(batch, TelemetryBatch)
                        out |= {(batch.host, round(ts * 1000)) for ts in batch.ts.tolist()}
    finally:
        consumer.close()
    return out


def in_store(vm: VictoriaMetrics, t0: float) -> set[tuple[str, int]]:
    """(host, ms timestamp) of the samples of one series per host that the store holds."""
    rows = export(vm.url, '{__name__="host_load1"}', start=t0 - 1)
    return {(row["metric"]["host"], ts) for row in rows for ts in row["timestamps"]}


def topics_for(bus: KafkaBus, unique: str) -> Topics:
    topics = Topics(f"sink{unique}")
    bus.create_topics({spec.name: spec.partitions for spec in topics.all()} | {s.dlq: 1 for s in topics.all()})
    return topics


def test_a_sink_killed_mid_run_and_restarted_leaves_no_gap(
    broker: EmbeddedBroker, unique: str, tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap])
    topics = topics_for(KafkaBus(kafka), unique)
    # Writes every 2 records, commits every 3 s: a kill lands between a write and its commit.
    sink = Sink(tmp_path, sink_config(broker.bootstrap, unique, victoria.url, batch_size=50, flush_interval="3s"))
    publisher = Publisher(kafka, topics).start()
    try:
        sink.start()
        poll(lambda: sink.written() > 20 * SERIES_PER_TICK, 90, "the sink writing")
        consumed = sink.metric("vigil_sink_records_total", f'{{topic="{topics.telemetry}"}}')
        sink.kill()
        group, partitions = f"sink-{unique}", topics["telemetry"].partitions
        offsets = committed(broker.bootstrap, group, topics.telemetry, partitions)
        assert sum(offsets.values()) < consumed, "the kill should land with records consumed but not committed"
        # At the moment of the kill, every sample below the committed offsets was in the store already.
        below = samples_below(broker.bootstrap, topics.telemetry, offsets)
        assert below, "nothing was committed before the kill"
        poll(lambda: below <= in_store(victoria, publisher.t0), 60, "the committed samples in the store")
        sink.start()
        poll(lambda: sink.written() > 0, 90, "the restarted sink writing")
        time.sleep(3)
        ticks = publisher.finish()
        wait_complete(victoria, publisher, ticks, sink)
    finally:
        publisher.finish()
        assert sink.stop() == 0, sink.logs()


def test_a_store_outage_is_retried_with_backoff_and_loses_nothing(
    broker: EmbeddedBroker, unique: str, tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap])
    topics = topics_for(KafkaBus(kafka), unique)
    retry = {"max_retries": 3, "initial": "200ms", "max_delay": "1s", "max_time": "5s"}
    sink = Sink(tmp_path, sink_config(broker.bootstrap, unique, victoria.url, retry=retry))
    publisher = Publisher(kafka, topics).start()
    try:
        sink.start()
        poll(lambda: sink.written() > 0, 90, "the sink writing")
        victoria.stop()
        poll(lambda: sink.metric("vigil_sink_store_up") == 0, 60, "the sink noticing the store is away")
        time.sleep(5)
        victoria.start()
        poll(lambda: sink.metric("vigil_sink_store_up") == 1, 90, "the sink writing again")
        ticks = publisher.finish()
        wait_complete(victoria, publisher, ticks, sink)
        assert sink.metric("vigil_sink_store_outages_total") >= 1
        assert sink.metric("vigil_sink_write_retries_total") >= 3  # the client's retries before each give-up
        assert sink.metric("vigil_bus_outages_total") == 0  # a store outage is not the broker's
    finally:
        publisher.finish()
        assert sink.stop() == 0, sink.logs()


# The publisher's producers abandoned while the broker is down fail again in kafka-python's __del__.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_broker_crash_under_the_sink_loses_nothing(unique: str, tmp_path: Path, victoria: VictoriaMetrics) -> None:
    broker = EmbeddedBroker(tmp_path / "broker").start()  # durable: records and offsets survive the crash
    sink = None
    publisher = None
    try:
        kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap], request_timeout=5.0)
        topics = topics_for(KafkaBus(kafka), unique)
        sink = Sink(tmp_path, sink_config(broker.bootstrap, unique, victoria.url))
        publisher = Publisher(kafka, topics).start()
        sink.start()
        poll(lambda: sink.written() > 0, 90, "the sink writing")
        broker.kill("tansu")
        time.sleep(5)  # the outage: an idle consumer only polls empty; one with lines pending fails its commit
        before = sink.written()
        broker.start()
        poll(lambda: sink.written() > before + 10 * SERIES_PER_TICK, 120, "the sink writing after the restart")
        ticks = publisher.finish()
        wait_complete(victoria, publisher, ticks, sink)
        assert sink.proc is not None and sink.proc.poll() is None and sink.starts == 1  # it carried on
    finally:
        if publisher is not None:
            publisher.finish()
        if sink is not None:
            assert sink.stop() == 0, sink.logs()
        broker.stop()
