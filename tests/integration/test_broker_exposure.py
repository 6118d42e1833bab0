"""The embedded broker's exposure: Tansu on loopback unless asked, its S3 store answering only requests
signed with this data folder's own generated credentials (kept 0600, reused on restart)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import httpx
import psutil
import pytest

from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.config import KafkaConfig

pytestmark = pytest.mark.integration


def listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def write_and_read(bootstrap: str, topic: str, write: int, expect: int) -> int:
    bus = KafkaBus(KafkaConfig(bootstrap_servers=[bootstrap], linger=0.001))
    bus.create_topics({topic: 1})
    if write:
        producer = bus.producer()
        for i in range(write):
            producer.send(topic, f"r{i}".encode())
        producer.flush(30)
        producer.close()
    consumer = bus.consumer([topic], f"read-{time.monotonic_ns()}")
    got = 0
    deadline = time.monotonic() + 40
    try:
        while got < expect and time.monotonic() < deadline:
            got += len(consumer.poll(0.5))
    finally:
        consumer.close()
    return got


def test_the_broker_listens_on_loopback_and_its_storage_wants_its_own_signature(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "a") as broker:
        pids = broker.pids()
        assert listening(pids["tansu"]) == {"127.0.0.1"}
        assert listening(pids["localbucket"]) == {"127.0.0.1"}
        assert write_and_read(broker.bootstrap, "signed", 5, 5) == 5  # Tansu signs with the folder's key
        s3 = json.loads((tmp_path / "a" / "broker" / "ports.json").read_text())["s3"]
        anonymous = httpx.get(f"http://127.0.0.1:{s3}/tansu/")
        assert anonymous.status_code == 403 and "SignatureDoesNotMatch" in anonymous.text
        credentials = json.loads((tmp_path / "a" / "broker" / "s3-credentials.json").read_text())
        forged = (
            f"AWS4-HMAC-SHA256 Credential={credentials['access_key']}/20260101/us-east-1/s3/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}"
        )
        headers = {"Authorization": forged, "x-amz-date": "20260101T000000Z"}
        assert httpx.get(f"http://127.0.0.1:{s3}/tansu/", headers=headers).status_code == 403
    assert "refused GET /tansu/" in (tmp_path / "a" / "broker" / "localbucket.log").read_text()


def test_credentials_are_made_per_folder_kept_private_and_reused(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "a") as broker:
        assert write_and_read(broker.bootstrap, "kept", 7, 7) == 7
    path = tmp_path / "a" / "broker" / "s3-credentials.json"
    first = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with EmbeddedBroker(tmp_path / "a") as broker:  # a restart: same key, so the stored records are readable
        assert write_and_read(broker.bootstrap, "kept", 0, 7) == 7
    assert json.loads(path.read_text()) == first
    with EmbeddedBroker(tmp_path / "b", ephemeral=True), EmbeddedBroker(tmp_path / "c"):
        other = json.loads((tmp_path / "c" / "broker" / "s3-credentials.json").read_text())
    assert other["access_key"] != first["access_key"] and other["secret_key"] != first["secret_key"]
    assert not (tmp_path / "b" / "broker" / "s3-credentials.json").exists()  # memory storage needs none


def test_listening_wider_is_explicit(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "w", ephemeral=True, host="0.0.0.0", advertised_host="127.0.0.1") as broker:
        assert listening(broker.pids()["tansu"]) == {"0.0.0.0"}
        assert broker.bootstrap.startswith("127.0.0.1:")
        assert write_and_read(broker.bootstrap, "wide", 3, 3) == 3
