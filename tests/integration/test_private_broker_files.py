"""The embedded broker's durable storage is private: its records, offsets, logs and pid files are 0600
in 0700 folders even under umask 000 (the broker and its S3 store run with umask 077)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.config import KafkaConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_durable_broker_storage_is_private(tmp_path: Path, permissive_umask: None) -> None:
    with EmbeddedBroker(tmp_path / "data") as broker:
        bus = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap], linger=0.001))
        bus.create_topics({"private-check": 1})
        producer = bus.producer()
        producer.send("private-check", b"a record", key=b"k")
        producer.flush(30)
        producer.close()
        bus.close()
    root = tmp_path / "data" / "broker"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.parent.name != "broker" for p in files), "the broker stored nothing on disk"
    loose = [f"{p.relative_to(root)} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in files if p.stat().st_mode & 0o077]
    loose += [
        f"{p.relative_to(root)}/ {oct(stat.S_IMODE(p.stat().st_mode))}"
        for p in [root, *root.rglob("*")]
        if p.is_dir() and stat.S_IMODE(p.stat().st_mode) != 0o700
    ]
    assert loose == []
