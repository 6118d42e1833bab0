"""Topics on the real broker: the replication factor asked for, and ``kafka.create_topics: false``
(use what an operator made; a missing topic stops the service at start, named)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus, MissingTopics
from vigil.cli.settings import VigilConfig
from vigil.config import KafkaConfig

pytestmark = pytest.mark.integration


def test_topics_are_created_with_the_configured_replication_factor(broker: EmbeddedBroker, unique: str) -> None:
    bus = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap], replication_factor=3))
    bus.create_topics({f"rf-{unique}": 2})
    admin = bus.admin()
    try:
        (described,) = admin.describe_topics([f"rf-{unique}"])
    finally:
        admin.close()
    assert [len(p["replica_nodes"]) for p in described["partitions"]] == [3, 3]


def test_without_create_topics_every_missing_topic_is_named(broker: EmbeddedBroker, unique: str) -> None:
    wanted = {f"a-{unique}": 1, f"b-{unique}": 2, f"c-{unique}": 1}
    KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap])).create_topics({f"b-{unique}": 2})
    strict = KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap], create_topics=False))
    with pytest.raises(MissingTopics) as caught:
        strict.create_topics(wanted)
    assert str(caught.value) == (
        f"kafka.create_topics is false and 2 topic(s) do not exist on {broker.bootstrap}: a-{unique}, c-{unique} "
        "(create them, or set kafka.create_topics: true)"
    )
    KafkaBus(KafkaConfig(bootstrap_servers=[broker.bootstrap])).create_topics(wanted)
    strict.create_topics(wanted)  # all there now: nothing to say


def test_a_service_stops_at_start_naming_the_missing_topics(
    broker: EmbeddedBroker, unique: str, tmp_path: Path
) -> None:
    kafka = {"bootstrap_servers": [broker.bootstrap], "create_topics": False, "topics": {"prefix": f"ops{unique}"}}
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "kafka": kafka}))
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "alerting", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    expected = VigilConfig.model_validate({"kafka": kafka}).topic_partitions()
    assert f"kafka.create_topics is false and {len(expected)} topic(s) do not exist" in lines[0]
    assert all(name in lines[0] for name in expected)
