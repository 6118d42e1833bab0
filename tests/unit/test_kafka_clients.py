"""One function builds every kafka-python client's connection settings (``client_settings``): a client
made anywhere else, or given its own ``bootstrap_servers``, would skip TLS and SASL."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"}
SECURITY_KEYS = {"bootstrap_servers", "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_password"}


def client_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for folder in ("vigil", "collectors", "analytics", "alerting"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CLIENTS:
                    calls.append((path.relative_to(ROOT), node))
    return calls


def from_client_settings(call: ast.Call) -> bool:
    """``Client(**client_settings(config), ...)``."""
    spreads = [k.value for k in call.keywords if k.arg is None]
    names = [v.func.id for v in spreads if isinstance(v, ast.Call) and isinstance(v.func, ast.Name)]
    return "client_settings" in names


def test_every_kafka_client_gets_its_connection_from_client_settings() -> None:
    calls = client_calls()
    assert {path.as_posix() for path, _ in calls} == {"vigil/bus/kafka.py", "vigil/cli/chaos.py"}
    for path, call in calls:
        assert from_client_settings(call), f"{path}:{call.lineno} builds a Kafka client without client_settings"
        own = {keyword.arg for keyword in call.keywords} & SECURITY_KEYS
        assert not own, f"{path}:{call.lineno} sets {own} itself"
