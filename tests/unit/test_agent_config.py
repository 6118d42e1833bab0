"""The agent's config section and command: bad config fails at start naming the key; the agent
process stays light."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vigil.collectors.agent import AgentConfig
from vigil.collectors.agent.factory import create_collectors, select_collectors
from vigil.collectors.base import CollectorContext

from vigil.cli.agent import agent_app, load_agent_file
from vigil.cli.app import build_app
from vigil.cli.settings import VigilConfig
from vigil.config import validate
from vigil.errors import ConfigError

COUNTER = "tests.agent_collectors"


def error_for(agent: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as failure:
        validate(VigilConfig, {"agent": agent})
    return str(failure.value)


def test_defaults() -> None:
    config = AgentConfig()
    assert config.host == socket.gethostname()
    assert list(config.enabled()) == ["host"]
    assert config.wait == 0.5


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"collectors": {"nvml": {"interval": "1 sec"}}}, "agent.collectors.nvml.interval: invalid duration '1 sec'"),
        ({"collectors": {"nvml": {"interval": "500ms"}}}, "agent.collectors.nvml.interval: shorter than agent.tick"),
        ({"collectors": {"smart": {"interval": "5m", "jitter": "5m"}}}, "agent.collectors.smart.jitter: must be"),
        ({"collectors": {"nvlm": {}}}, "agent.collectors.nvlm: unknown collector (known: "),
        ({"collectors": {"nvml": {"enabled": "maybe"}}}, "agent.collectors.nvml.enabled: Input should be a valid"),
        ({"tik": "1s"}, "agent.tik: unknown key"),
        ({"buffer": {"memory_bytes": 10}}, "agent.buffer.memory_bytes: Input should be greater than or equal"),
        ({"tick": "2s", "batch_wait": "3s"}, "agent.batch_wait: must be positive and shorter than the tick"),
        ({"host": ""}, "agent.host: String should have at least 1 character"),
    ],
)
def test_bad_config_names_the_key(agent: dict[str, object], message: str) -> None:
    assert message in error_for(agent)


def test_collector_options_are_kept_for_the_collector() -> None:
    config = AgentConfig.model_validate({"collectors": {"smart": {"interval": "5m", "devices": ["/dev/sda"]}}})
    spec = config.collectors["smart"]
    assert spec.interval == 300 and spec.options == {"devices": ["/dev/sda"]}
    assert spec.run_timeout == 300


def test_a_bad_collector_option_fails_at_start_naming_the_key() -> None:
    config = AgentConfig.model_validate({"collectors": {"counter": {"module": COUNTER, "start": "zero"}}})
    with pytest.raises(ConfigError, match=r"agent\.collectors\.counter\.start"):
        create_collectors(config, CollectorContext("n"))


def test_a_collector_that_cannot_be_imported_fails_at_start_naming_it() -> None:
    config = AgentConfig.model_validate({"collectors": {"mine": {"module": "site_collectors.nope"}}})
    with pytest.raises(ConfigError, match=r"agent\.collectors\.mine: cannot load the collector"):
        create_collectors(config, CollectorContext("n"))


def test_the_collectors_override_picks_exactly_those() -> None:
    config = AgentConfig.model_validate(
        {"collectors": {"host": {"interval": "10s"}, "smart": {"interval": "5m", "enabled": False}}}
    )
    chosen = select_collectors(config, f"smart, counter={COUNTER}")
    assert list(chosen.enabled()) == ["counter", "smart"]
    assert chosen.collectors["smart"].interval == 300  # the file's settings are kept
    with pytest.raises(ConfigError, match=r"agent\.collectors\.bogus: unknown collector"):
        select_collectors(config, "bogus")


def test_the_agent_reads_only_its_sections_and_check_config_validates_the_agent_section(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yaml"
    path.write_text("cluster: dc1\nagent:\n  collectors:\n    nvml: {interval: 1 sec}\nalerting: {notifiers: []}\n")
    result = CliRunner().invoke(build_app(), ["check-config", "-c", str(path)])
    assert result.exit_code == 2 and "agent.collectors.nvml.interval: invalid duration" in result.output
    result = CliRunner().invoke(agent_app(), ["--config", str(path), "--once"])
    assert result.exit_code == 2 and "agent.collectors.nvml.interval: invalid duration" in result.output
    path.write_text(f"cluster: dc1\nanalytics: {{whatever: 1}}\nagent: {{collectors: {{c: {{module: {COUNTER}}}}}}}\n")
    assert load_agent_file(path).cluster == "dc1"  # another service's section is not the agent's business


def test_once_prints_what_would_be_published(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(agent_app(), ["--once", "--collectors", f"counter={COUNTER}"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("# TelemetryBatch host=") and "1 series" in lines[0] and "vigil.telemetry.v1" in lines[0]
    assert lines[1] == "agent_test_sequence 0"


def test_running_without_a_broker_address_fails_clearly() -> None:
    result = CliRunner().invoke(agent_app(), ["--collectors", f"counter={COUNTER}", "--duration", "1"])
    assert result.exit_code == 2 and "kafka.bootstrap_servers is empty" in result.output


def test_the_agent_process_imports_no_other_service() -> None:
    script = (
        "import sys\n"
        "from vigil.cli import main\n"
        "sys.argv = ['vigil', 'agent', '--once', '--collectors', 'counter=tests.agent_collectors']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('fastapi', 'uvicorn', 'sklearn', 'torch', 'statsmodels', 'matplotlib', 'scipy', 'httpx',"
        " 'vigil.analytics', 'vigil.alerting', 'vigil.cli.settings')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root)
    assert "agent_test_sequence 0" in out.stdout, out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_the_host_comes_from_the_command_line_when_given(tmp_path: Path) -> None:
    """A DaemonSet passes the node's name (the downward API's spec.nodeName) with --host."""
    path = tmp_path / "vigil.yaml"
    path.write_text("agent: {host: from-file}\n")
    assert load_agent_file(path).agent.host == "from-file"
    assert load_agent_file(path, host="gpu-node-7").agent.host == "gpu-node-7"
    result = CliRunner().invoke(
        agent_app(), ["-c", str(path), "--once", "--host", "gpu-node-7", "--collectors", f"counter={COUNTER}"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# TelemetryBatch host=gpu-node-7 ")
