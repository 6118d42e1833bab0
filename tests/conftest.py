"""Shared fixtures. Integration fixtures start real servers on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.config import KafkaConfig


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Tansu broker (memory storage) for the integration suite; tests use unique topics."""
    with EmbeddedBroker(tmp_path_factory.mktemp("broker"), ephemeral=True) as running:
        yield running


@pytest.fixture
def kafka_config(broker: EmbeddedBroker) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=[broker.bootstrap], linger=0.001)


@pytest.fixture
def kafka_bus(kafka_config: KafkaConfig) -> KafkaBus:
    return KafkaBus(kafka_config)


@pytest.fixture
def unique() -> str:
    """A unique suffix for topic and group names, so integration tests never share state."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def datasets() -> Path:
    from vigil.analytics.eval import datasets_root

    path = datasets_root()
    if not path.exists():
        pytest.skip("shared datasets are not present")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One real PostgreSQL server for the session (tests/postgres.py); tests call ``reset`` first."""
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url
