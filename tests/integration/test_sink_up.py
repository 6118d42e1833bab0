"""``vigil up`` with ``sink.influx.enabled``: the sink runs beside the services, writes the simulated fleet into
a real VictoriaMetrics, and is restarted by supervision like any service. Off by default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_supervision import SMALL_FLEET, supervise_until
from tests.stores import export
from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack
from vigil.cli.victoria import VictoriaMetrics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics(tmp_path / "vm") as vm:
        yield vm


def test_the_sink_is_not_started_unless_enabled(tmp_path: Path) -> None:
    assert Stack(VigilConfig.model_validate({"data_dir": str(tmp_path)})).services() == ("alerting", "analytics", "sim")


def test_vigil_up_runs_the_enabled_sink_and_restarts_it_when_it_dies(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    config = VigilConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "sim": SMALL_FLEET,
            "supervision": {"backoff": "0.5s"},
            "sink": {"influx": {"enabled": True, "url": victoria.url}},
        }
    )
    stack = Stack(config, ephemeral=True).start()
    try:
        assert stack.services() == ("alerting", "analytics", "sim", "canary", "sink")

        def in_store() -> bool:
            return len(export(victoria.url, '{__name__="gpu_temperature_celsius"}')) == 4  # 2 hosts x 2 GPUs

        supervise_until(stack, in_store, 120)
        stack.kill("sink")
        supervise_until(stack, lambda: stack.supervisor.restarts["sink"] == 1 and bool(stack.healthz("sink")), 90)
        health = stack.healthz("sink")
        assert health is not None and health["store"] == victoria.url
    finally:
        stack.stop()
    assert stack.report()["restarts"]["sink"] == 1
