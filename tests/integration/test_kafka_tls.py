"""Kafka over TLS through a real TLS endpoint: stunnel in front of the embedded broker (tests/tls_broker.py).

Producers, consumers and the admin client get their TLS settings from ``kafka.tls`` through one
function (``vigil.bus.connection.client_settings``); a certificate problem is one line naming the key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from vigil.collectors.training.reporter import Reporter, bus_from_env

from tests.tls_broker import Pki, TlsBroker, make_pki
from tests.training_records import step_numbers
from vigil.bus.connection import diagnose
from vigil.bus.kafka import KafkaBus
from vigil.codec import decode
from vigil.config import KafkaConfig
from vigil.events import TelemetryBatch
from vigil.topics import Topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path_factory.mktemp("tls"), pki).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    broker = TlsBroker(tmp_path_factory.mktemp("mtls"), pki, require_client_cert=True).start()
    yield broker
    broker.stop()


def kafka(broker: TlsBroker, **tls: Any) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=[broker.bootstrap], linger=0.001, tls=tls)


def round_trip(config: KafkaConfig, topic: str, count: int = 20) -> list[bytes]:
    bus = KafkaBus(config)
    bus.create_topics({topic: 2})
    producer = bus.producer()
    for i in range(count):
        producer.send(topic, f"record-{i}".encode(), key=f"k{i}".encode())
    producer.flush(30)
    producer.close()
    consumer = bus.consumer([topic], f"g-{topic}")
    got: list[bytes] = []
    deadline = time.monotonic() + 40
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [r.value for r in consumer.poll(0.5)]
    finally:
        consumer.close()
    return sorted(got)


def test_produce_and_consume_over_tls(tls_broker: TlsBroker, pki: Pki, unique: str) -> None:
    got = round_trip(kafka(tls_broker, ca_file=pki.ca_file), f"tls-{unique}")
    assert got == sorted(f"record-{i}".encode() for i in range(20))


def test_the_endpoint_speaks_only_tls(tls_broker: TlsBroker) -> None:
    """A plain-TCP client gets no Kafka answer from the TLS port: the round trip above was encrypted."""
    problem = diagnose(KafkaConfig(bootstrap_servers=[tls_broker.bootstrap]), timeout_s=3)
    assert problem is not None and problem.message.startswith("kafka.bootstrap_servers: no broker answered")


def test_mutual_tls_with_an_encrypted_client_key(mtls_broker: TlsBroker, pki: Pki, unique: str, tmp_path: Path) -> None:
    password = tmp_path / "key-password"
    password.write_text(pki.key_password + "\n")
    config = kafka(
        mtls_broker,
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
        key_password={"file": str(password)},
    )
    assert round_trip(config, f"mtls-{unique}", 5) == sorted(f"record-{i}".encode() for i in range(5))


def test_a_wrong_ca_is_one_error_naming_the_key(tls_broker: TlsBroker, pki: Pki) -> None:
    problem = diagnose(kafka(tls_broker, ca_file=pki.other_ca_file), timeout_s=5)
    assert problem is not None and problem.fatal
    assert problem.message.startswith(f"kafka.tls.ca_file: {pki.other_ca_file}: certificate verify failed")
    assert tls_broker.bootstrap in problem.message and "\n" not in problem.message


def test_a_broker_that_requires_a_client_certificate_says_so(mtls_broker: TlsBroker, pki: Pki) -> None:
    problem = diagnose(kafka(mtls_broker, ca_file=pki.ca_file), timeout_s=5)
    assert problem is not None and problem.fatal
    assert problem.message.startswith(f"kafka.tls.cert_file: {mtls_broker.bootstrap} requires a client certificate")


def test_host_name_check_on_and_off(tmp_path: Path, unique: str) -> None:
    """The certificate names only ``broker.internal``: refused with the check, accepted without it
    (the chain is still verified against the CA)."""
    pki = make_pki(tmp_path / "pki", server_names=("broker.internal",))
    broker = TlsBroker(tmp_path / "tls", pki).start()
    try:
        problem = diagnose(kafka(broker, ca_file=pki.ca_file), timeout_s=5)
        assert problem is not None and problem.fatal
        assert problem.message.startswith(f"kafka.tls.check_hostname: {broker.bootstrap}: certificate verify failed")
        relaxed = kafka(broker, ca_file=pki.ca_file, check_hostname=False)
        assert round_trip(relaxed, f"nohost-{unique}", 3) == [b"record-0", b"record-1", b"record-2"]
        wrong_ca = kafka(broker, ca_file=pki.other_ca_file, check_hostname=False)
        assert diagnose(wrong_ca, timeout_s=5) is not None
    finally:
        broker.stop()


def run_vigil(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vigil.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)


def test_a_service_given_a_wrong_ca_exits_with_one_line(tls_broker: TlsBroker, pki: Pki, tmp_path: Path) -> None:
    config = tmp_path / "vigil.yaml"
    kafka_section = {"bootstrap_servers": [tls_broker.bootstrap], "tls": {"ca_file": str(pki.other_ca_file)}}
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "kafka": kafka_section}))
    started = time.monotonic()
    done = run_vigil(["analytics", "-c", str(config)], timeout_s=60)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30  # not kafka-python's retries until a bootstrap timeout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"kafka.tls.ca_file: {pki.other_ca_file}: certificate verify failed" in lines[0]


def test_the_simulator_publishes_over_mutual_tls(mtls_broker: TlsBroker, pki: Pki, tmp_path: Path, unique: str) -> None:
    password = tmp_path / "key-password"
    password.write_text(pki.key_password)
    tls = {"ca_file": pki.ca_file, "cert_file": pki.client_cert, "key_file": pki.client_key}
    config = kafka(mtls_broker, **tls, key_password={"file": str(password)})
    kafka_section = config.model_dump(mode="json", exclude={"topics"}) | {"topics": {"prefix": f"tls{unique}"}}
    path = tmp_path / "vigil.yaml"
    sim = {"nodes": 2, "spare_nodes": 1, "gpus_per_node": 2, "schedule": "none"}
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "kafka": kafka_section, "sim": sim}))
    done = run_vigil(["sim", "-c", str(path), "--duration", "3"], timeout_s=90)
    assert done.returncode == 0, done.stderr
    topic = Topics(f"tls{unique}").telemetry
    consumer = KafkaBus(config).consumer([topic], f"check-{unique}")
    hosts: set[str] = set()
    deadline = time.monotonic() + 40
    try:
        while len(hosts) < 3 and time.monotonic() < deadline:
            for record in consumer.poll(0.5):
                event = decode(record.value)
                if isinstance(event, TelemetryBatch):
                    hosts.add(event.host)
    finally:
        consumer.close()
    assert hosts == {"node-00", "node-01", "node-02"}  # the job's two nodes and the hot spare


def test_the_training_sdk_reports_over_tls_from_environment_variables(
    tls_broker: TlsBroker, pki: Pki, unique: str
) -> None:
    env = {"VIGIL_KAFKA_BOOTSTRAP_SERVERS": tls_broker.bootstrap, "VIGIL_KAFKA_TLS_CA_FILE": str(pki.ca_file)}
    topics = Topics(f"sdk{unique}")
    KafkaBus(kafka(tls_broker, ca_file=pki.ca_file)).create_topics({topics.training: 1})
    with Reporter(bus_from_env(env), job_id=f"job-{unique}", topics=topics) as reporter:
        for step in range(5):
            reporter.report(step, 1.0 / (step + 1))
    consumer = KafkaBus(kafka(tls_broker, ca_file=pki.ca_file)).consumer([topics.training], f"sdk-{unique}")
    steps: list[int] = []
    deadline = time.monotonic() + 40
    try:
        while len(steps) < 5 and time.monotonic() < deadline:
            steps += [n for record in consumer.poll(0.5) for n in step_numbers(record.value)]
    finally:
        consumer.close()
    assert sorted(steps) == [0, 1, 2, 3, 4]
    assert os.environ.get("VIGIL_KAFKA_TLS_CA_FILE") is None  # the SDK read the mapping it was given
