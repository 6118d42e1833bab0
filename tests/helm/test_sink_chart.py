"""The chart's Influx sink (``sink.influx.enabled``): a Deployment whose pods read the config and the secrets
fragment, probed where the sink answers; and its command line, run for real against a broker and a
VictoriaMetrics, writes the telemetry and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helm.chart import render
from tests.helm.test_chart_config import (
    LOOPBACK,
    free_loopback_port,
    healthz,
    mounted_files,
    pod_args,
    started,  # noqa: F401 - the fixture
)
from tests.stores import export, poll
from vigil.broker import EmbeddedBroker
from vigil.bus.kafka import KafkaBus
from vigil.cli.victoria import VictoriaMetrics
from vigil.codec import encode
from vigil.config import KafkaConfig
from vigil.events import TelemetryBatch
from vigil.topics import Topics


def test_the_sink_is_off_by_default() -> None:
    assert not [d for d in render().docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "sink"]


def test_the_sink_deployment_reads_config_and_secrets_and_is_probed_on_its_metrics_port() -> None:
    rendered = render("sink")
    deployment = rendered.one("Deployment", "sink")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["args"] == [
        "sink",
        "influx",
        "--config=/etc/vigil/config.yaml",
        "--config=/etc/vigil/secrets/secrets.yaml",
        "--metrics-address=0.0.0.0",
        "--metrics-port=9481",
    ]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9481, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert pod["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["readOnlyRootFilesystem"]
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert secret_volume["secret"]["secretName"] == rendered.one("Secret")["metadata"]["name"]
    # The token is in the Secret, never in the ConfigMap.
    assert "vm-write-token" not in rendered.config_text()
    assert "vm-write-token" in rendered.one("Secret")["stringData"]["secrets.yaml"]
    assert rendered.config()["sink"]["influx"]["url"] == "http://victoria-metrics:8428"
    service = rendered.one("Service", "sink")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == "observability"


@pytest.mark.integration
@pytest.mark.slow
def test_the_charts_sink_command_line_writes_to_the_store(
    broker: EmbeddedBroker,
    unique: str,
    tmp_path: Path,
    started: dict[str, subprocess.Popen[bytes]],  # noqa: F811 - the fixture
) -> None:
    rendered = render("sink")
    files = mounted_files(rendered, tmp_path)
    port = free_loopback_port()
    with VictoriaMetrics(tmp_path / "vm") as vm:
        here = tmp_path / "here.yaml"  # what differs on this machine: the broker, the store, names
        here.write_text(
            yaml.safe_dump(
                {
                    "kafka": {"bootstrap_servers": [broker.bootstrap], "topics": {"prefix": f"helm{unique}"}},
                    "sink": {"influx": {"url": vm.url, "group": f"sink-{unique}"}},
                }
            )
        )
        extra = [f"--config={here}", f"--metrics-address={LOOPBACK}", f"--metrics-port={port}"]
        args = pod_args(rendered.container("Deployment", "sink"), files, *extra)
        log = (tmp_path / "sink.log").open("wb")
        started["sink"] = subprocess.Popen([sys.executable, "-m", "vigil.cli", *args], stdout=log, stderr=log)
        assert healthz(port, 120, until=lambda body: body["assigned"])["service"] == "sink-influx"

        kafka = KafkaConfig(bootstrap_servers=[broker.bootstrap])
        topics = Topics(f"helm{unique}")
        producer = KafkaBus(kafka).producer()
        batch = TelemetryBatch("gpu-node-7", "dc1", np.array([time.time()]), ("host_load1",), np.array([[0.75]]))
        producer.send(topics.telemetry, encode(batch), key=b"gpu-node-7")
        producer.flush(10)
        producer.close()
        rows = poll(lambda: export(vm.url, 'host_load1{host="gpu-node-7"}'), 90, "the sample in the store")
        assert rows[0]["values"] == [0.75]  # type: ignore[index]

        started["sink"].send_signal(signal.SIGTERM)  # a pod's stop: write what is pending, commit, exit 0
        assert started["sink"].wait(timeout=60) == 0, (tmp_path / "sink.log").read_text()[-3000:]
