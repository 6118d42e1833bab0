"""Every listener binds 127.0.0.1 unless told otherwise: the defaults, checked on the real sockets."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from vigil.alerting.api import ApiServer
from vigil.alerting.config import AlertingConfig
from vigil.collectors.agent import AgentConfig

from vigil.broker import EmbeddedBroker
from vigil.cli.common import metrics_address_option
from vigil.cli.receiver import HangingReceiver, WebhookReceiver
from vigil.config import BrokerConfig
from vigil.selfmetrics import SelfMetricsServer


def test_servers_bind_loopback_by_default() -> None:
    metrics = SelfMetricsServer(CollectorRegistry(), lambda: {"ok": True})
    receiver, hanging = WebhookReceiver(), HangingReceiver().start()
    api = ApiServer(FastAPI())
    try:
        assert metrics._server.server_address[0] == "127.0.0.1"
        assert receiver.url.startswith("http://127.0.0.1:") and hanging.url.startswith("http://127.0.0.1:")
        assert api._socket.getsockname()[0] == "127.0.0.1"
    finally:
        metrics._server.server_close()
        receiver.stop()
        hanging.stop()
        api._socket.close()


def test_the_options_to_listen_wider_default_to_loopback(tmp_path: Path) -> None:
    assert AlertingConfig().api.host == "127.0.0.1"  # alerting.api.host
    assert AgentConfig().metrics_address == "127.0.0.1"  # agent.metrics_address
    assert metrics_address_option().default == "127.0.0.1"  # every service's --metrics-address
    assert BrokerConfig().host == "127.0.0.1" and BrokerConfig().advertised_host is None  # broker.host
    broker = EmbeddedBroker(tmp_path, ephemeral=True)
    assert broker.host == "127.0.0.1" and broker.bootstrap.startswith("127.0.0.1:")
