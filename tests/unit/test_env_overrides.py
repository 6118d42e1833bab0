"""``VIGIL_*`` environment overrides of any config key, ``VIGIL_CONFIG`` and ``--log-level``: applied
after the files and before validation, so a bad value is named by its key like a file's would be."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigil.cli.agent import load_agent_file
from vigil.cli.app import build_app
from vigil.cli.processes import child_environment
from vigil.cli.settings import VigilConfig, load_config
from vigil.config import env_overrides
from vigil.errors import ConfigError


def test_nested_keys_and_value_types() -> None:
    env = {
        "VIGIL_KAFKA__BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1:9092",
        "VIGIL_ALERTING__API__PORT": "8080",
        "VIGIL_KAFKA__IDEMPOTENCE": "true",
        "VIGIL_KAFKA__TOPICS__PARTITIONS": "{telemetry: 16}",
        "VIGIL_CLUSTER": "0123",  # a text field keeps its text, leading zero and all
        "vigil_log_level": "debug",  # names match whatever their case
    }
    assert env_overrides(VigilConfig, env) == {
        "kafka": {
            "bootstrap_servers": ["kafka-0:9092", "kafka-1:9092"],
            "idempotence": True,
            "topics": {"partitions": {"telemetry": 16}},
        },
        "alerting": {"api": {"port": 8080}},
        "cluster": "0123",
        "log_level": "debug",
    }
    config = load_config(None, environ=env)
    assert config.kafka.bootstrap_servers == ["kafka-0:9092", "kafka-1:9092"]
    assert config.alerting.api.port == 8080 and config.kafka.topics.partitions["telemetry"] == 16
    assert load_config(None, environ={"VIGIL_KAFKA__BOOTSTRAP_SERVERS": "[a:1, b:2]"}).kafka.bootstrap_servers == [
        "a:1",
        "b:2",
    ]


def test_other_vigil_variables_are_not_config(tmp_path: Path) -> None:
    env = {"VIGIL_DATASETS": "/data", "VIGIL_HOOK_SECRET": "s3cret", "VIGIL_KAFKA_BOOTSTRAP_SERVERS": "x:1"}
    assert env_overrides(VigilConfig, env) == {}
    assert load_config(None, environ=env) == load_config(None, environ={})


def test_the_environment_wins_over_the_files_and_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yaml"
    path.write_text("cluster: from-file\nkafka: {bootstrap_servers: [file:9092], compression: zstd}\n")
    config = load_config(path, environ={"VIGIL_CLUSTER": "from-env"})
    assert config.cluster == "from-env" and config.kafka.compression == "zstd"  # the file's other keys stay
    named = r"alerting\.api\.port: Input should be a valid integer.*\(from VIGIL_ALERTING__API__PORT\)"
    with pytest.raises(ConfigError, match=named):
        load_config(path, environ={"VIGIL_ALERTING__API__PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_server: unknown key"):
        load_config(path, environ={"VIGIL_KAFKA__BOOTSTRAP_SERVER": "typo:9092"})
    with pytest.raises(ConfigError, match=r"kafka\.session_timeout: must be a positive duration"):
        load_config(path, environ={"VIGIL_KAFKA__SESSION_TIMEOUT": "0s"})


def test_the_agent_reads_its_keys_from_the_environment_too(tmp_path: Path) -> None:
    env = {"VIGIL_AGENT__HOST": "gpu-node-3", "VIGIL_AGENT__METRICS_PORT": "9999", "VIGIL_ANALYTICS__X": "1"}
    loaded = load_agent_file(None, environ=env)
    assert loaded.agent.host == "gpu-node-3" and loaded.agent.metrics_port == 9999
    assert load_agent_file(None, host="cli-wins", environ=env).agent.host == "cli-wins"


def test_vigil_config_names_the_files_and_the_children_get_no_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, secrets = tmp_path / "base.yaml", tmp_path / "secrets.yaml"
    base.write_text("cluster: dc1\n")
    secrets.write_text("cluster: dc2\n")
    result = CliRunner().invoke(build_app(), ["check-config", "--json"], env={"VIGIL_CONFIG": f"{base}:{secrets}"})
    assert result.exit_code == 0, result.output
    assert '"cluster": "dc2"' in result.stdout  # both files, merged in order
    missing = CliRunner().invoke(build_app(), ["check-config"], env={"VIGIL_CONFIG": str(tmp_path / "nope.yaml")})
    assert missing.exit_code == 2
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", "elsewhere:9092")
    monkeypatch.setenv("VIGIL_DATASETS", "/data")
    env = child_environment()
    assert "VIGIL_KAFKA__BOOTSTRAP_SERVERS" not in env and env["VIGIL_DATASETS"] == "/data"


def test_log_level_option_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "info")  # restored after the test: the option sets it
    result = CliRunner().invoke(build_app(), ["--log-level", "debug", "check-config"])
    assert result.exit_code == 0
    assert load_config(None).log_level == "debug"
