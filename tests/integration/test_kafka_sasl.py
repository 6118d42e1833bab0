"""SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512): a contract test of what kafka-python sends with Vigil's
settings, against a SASL front that checks it by the protocol and forwards to a real Tansu
(tests/sasl_proxy.py says why Tansu 0.6 cannot authenticate by itself)."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from vigil.collectors.training.reporter import Reporter, bus_from_env

from tests.sasl_proxy import SaslProxy
from tests.tls_broker import spawn_tansu
from vigil.broker import free_port
from vigil.bus.connection import diagnose
from vigil.bus.kafka import KafkaBus
from vigil.codec import decode
from vigil.config import KafkaConfig
from vigil.errors import RetryableError
from vigil.events import TrainingStep
from vigil.topics import Topics

pytestmark = pytest.mark.integration
USERS = {"vigil": "correct horse battery staple", "sdk": "s3cret-for-jobs"}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslProxy]:
    front, plain = free_port(), free_port()
    tansu = spawn_tansu(tmp_path_factory.mktemp("sasl"), plain, front)
    running = SaslProxy(front, plain, USERS).start()
    yield running
    running.stop()
    tansu.kill()  # memory storage: nothing to flush, and SIGTERM waits for clients to hang up
    tansu.wait(10)


def config(proxy: SaslProxy, **sasl: Any) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=[f"127.0.0.1:{proxy.port}"], linger=0.001, sasl=sasl)


def round_trip(cfg: KafkaConfig, topic: str, count: int = 10) -> list[bytes]:
    bus = KafkaBus(cfg)
    bus.create_topics({topic: 1})
    producer = bus.producer()
    for i in range(count):
        producer.send(topic, f"m{i}".encode())
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
    return got


def scram_attributes(message: bytes) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.decode().split(",") if "=" in part)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_round_trip_with_the_password_from_a_file(
    proxy: SaslProxy, mechanism: str, tmp_path: Path, unique: str
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(USERS["vigil"] + "\n")
    before = len(proxy.exchanges)
    cfg = config(proxy, mechanism=mechanism, username="vigil", password={"file": str(secret)})
    assert round_trip(cfg, f"scram-{unique}") == [f"m{i}".encode() for i in range(10)]
    exchanges = [e for e in proxy.exchanges[before:] if e.mechanism]
    # Producer, consumer and admin client: every connection authenticated, each by the full SCRAM exchange.
    assert exchanges and all(e.mechanism == mechanism and e.authenticated for e in exchanges)
    first, final = exchanges[0].messages
    assert first.startswith(b"n,,n=vigil,r=")  # gs2 header without channel binding, then client-first-bare
    nonce = scram_attributes(first)["r"]
    attrs = scram_attributes(final)
    assert attrs["c"] == "biws" and attrs["r"].startswith(nonce) and len(base64.b64decode(attrs["p"])) > 0
    assert not any(e.refused for e in proxy.exchanges[before:])


def test_plain_round_trip_with_the_password_from_the_environment(
    proxy: SaslProxy, monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    monkeypatch.setenv("VIGIL_TEST_KAFKA_PASSWORD", USERS["vigil"])
    before = len(proxy.exchanges)
    cfg = config(proxy, mechanism="PLAIN", username="vigil", password={"env": "VIGIL_TEST_KAFKA_PASSWORD"})
    assert round_trip(cfg, f"plain-{unique}", 3) == [b"m0", b"m1", b"m2"]
    plain = [e for e in proxy.exchanges[before:] if e.mechanism]
    assert plain
    for exchange in plain:  # RFC 4616: [authzid] NUL authcid NUL password, in one token
        (token,) = exchange.messages
        authzid, authcid, password = token.decode().split("\0")
        assert authzid in ("", "vigil") and authcid == "vigil" and password == USERS["vigil"]


def test_a_wrong_password_is_refused_and_named(proxy: SaslProxy, unique: str) -> None:
    cfg = config(proxy, mechanism="SCRAM-SHA-512", username="vigil", password="not the password")
    with pytest.raises(RetryableError) as caught:
        KafkaBus(cfg).create_topics({f"never-{unique}": 1})
    message = str(caught.value)
    expected = f"kafka.sasl: 127.0.0.1:{proxy.port} refused 'vigil' (SCRAM-SHA-512): Authentication failed"
    assert message.startswith(expected) and "\n" not in message
    problem = diagnose(cfg)  # what a service prints at start, at once
    assert problem is not None and problem.fatal and problem.message.startswith(expected)
    assert any(e.refused.startswith("Authentication failed") for e in proxy.exchanges)


def test_a_client_without_sasl_is_turned_away(proxy: SaslProxy, unique: str) -> None:
    """The front really requires authentication: the round trips above depended on it."""
    before = len(proxy.exchanges)
    cfg = KafkaConfig(bootstrap_servers=[f"127.0.0.1:{proxy.port}"], request_timeout=5)
    with pytest.raises(RetryableError):
        KafkaBus(cfg).create_topics({f"never-{unique}": 1})
    assert any(e.refused.startswith("api key") for e in proxy.exchanges[before:])


def test_the_training_sdk_authenticates_from_environment_variables(
    proxy: SaslProxy, tmp_path: Path, unique: str
) -> None:
    secret = tmp_path / "sdk-password"
    secret.write_text(USERS["sdk"])
    env = {
        "VIGIL_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{proxy.port}",
        "VIGIL_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "VIGIL_KAFKA_SASL_USERNAME": "sdk",
        "VIGIL_KAFKA_SASL_PASSWORD_FILE": str(secret),
    }
    topics = Topics(f"sasl{unique}")
    admin = config(proxy, mechanism="SCRAM-SHA-256", username="sdk", password={"file": str(secret)})
    KafkaBus(admin).create_topics({topics.training: 1})
    with Reporter(bus_from_env(env), job_id=f"job-{unique}", topics=topics) as reporter:
        for step in range(3):
            reporter.report(step, 0.5)
    consumer = KafkaBus(admin).consumer([topics.training], f"sdk-{unique}")
    steps: list[int] = []
    deadline = time.monotonic() + 40
    try:
        while len(steps) < 3 and time.monotonic() < deadline:
            steps += [e.step for r in consumer.poll(0.5) if isinstance(e := decode(r.value), TrainingStep)]
    finally:
        consumer.close()
    assert sorted(steps) == [0, 1, 2]
    assert any(e.user == "sdk" and e.mechanism == "SCRAM-SHA-256" and e.authenticated for e in proxy.exchanges)


def test_the_simulator_authenticates_and_an_inline_password_is_named_not_shown(
    proxy: SaslProxy, tmp_path: Path, unique: str
) -> None:
    kafka = {
        "bootstrap_servers": [f"127.0.0.1:{proxy.port}"],
        "sasl": {"mechanism": "SCRAM-SHA-512", "username": "vigil", "password": USERS["vigil"]},
        "topics": {"prefix": f"sim{unique}"},
    }
    path = tmp_path / "vigil.yaml"
    sim = {"nodes": 1, "gpus_per_node": 2, "schedule": "none"}
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "kafka": kafka, "sim": sim}))
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "sim", "-c", str(path), "--duration", "3"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert output.count("kafka.sasl.password is written in the config file itself") == 1
    assert USERS["vigil"] not in output
    cfg = config(proxy, mechanism="SCRAM-SHA-512", username="vigil", password=USERS["vigil"])
    consumer = KafkaBus(cfg).consumer([Topics(f"sim{unique}").telemetry], f"sim-{unique}")
    batches = 0
    deadline = time.monotonic() + 40
    try:
        while batches == 0 and time.monotonic() < deadline:
            batches += len(consumer.poll(0.5))
    finally:
        consumer.close()
    assert batches > 0
