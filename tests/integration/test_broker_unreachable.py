"""A broker that is not there: one line naming ``kafka.bootstrap_servers`` and what was tried.

Services (``sim``, ``analytics``, ``alerting``, ``agent``) are meant to outlive their broker, so one
started first waits for it: one warning when the wait starts, one line when it ends, SIGTERM honoured
meanwhile. ``vigil up`` with a configured broker is a command a person runs and watches: it fails at
once (exit 1). kafka-python's own retry log stays out of the output either way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from vigil.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


def write_config(path: Path, port: int, **extra: object) -> Path:
    data = {"data_dir": str(path.parent / "data"), "kafka": {"bootstrap_servers": [f"127.0.0.1:{port}"]}, **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([sys.executable, "-m", "vigil.cli", *args], stdout=out, stderr=out, env=env)


def wait_for_text(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 40.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = log.read_text()
        if text in content:
            return content
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the output within {timeout_s}s:\n{log.read_text()}")


def wait_for_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise


def no_library_noise(output: str) -> None:
    assert "Traceback" not in output, output
    assert not re.search(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) kafka\.", output), output


@pytest.mark.parametrize("service", ["sim", "alerting"])
def test_a_service_waits_for_a_missing_broker_with_one_line(service: str, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "vigil.yaml", port)
    log = tmp_path / "out.log"
    proc = spawn([service, "-c", str(config)], log)
    expected = f"kafka.bootstrap_servers: no broker answered (127.0.0.1:{port}: connection refused): waiting"
    wait_for_text(log, expected, proc)
    time.sleep(3)  # a few more attempts (1 s, 2 s apart): still one line
    assert stop(proc) == 0
    output = log.read_text()
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], output
    no_library_noise(output)


def test_analytics_waits_then_runs_once_the_broker_comes(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "vigil.yaml", port)
    log = tmp_path / "analytics.log"
    metrics_port = free_port()
    proc = spawn(["analytics", "-c", str(config), "--metrics-port", str(metrics_port)], log)
    try:
        wait_for_text(log, f"no broker answered (127.0.0.1:{port}: connection refused): waiting", proc)
        with EmbeddedBroker(tmp_path / "broker", ephemeral=True, port=port):
            wait_for_text(log, "broker answers after", proc)
            # The metrics server starts once connect() has returned (topics made): the service runs.
            assert wait_for_http(f"http://127.0.0.1:{metrics_port}/metrics", proc)
            assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = log.read_text()
    assert output.count("waiting for a broker") == 1
    no_library_noise(output)


def test_vigil_up_fails_at_once_naming_the_key(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "vigil.yaml", port)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "up", "-c", str(config), "--duration", "5", "--report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert time.monotonic() - started < 30
    assert f"kafka.bootstrap_servers: no broker answered (127.0.0.1:{port}: connection refused)" in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1, done.stderr
    no_library_noise(done.stdout + done.stderr)


def test_the_agent_buffers_and_says_why_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    agent = {"collectors": {"host": {"interval": "1s"}}, "metrics_port": -1, "host": "node-x", "shutdown_timeout": "1s"}
    config = write_config(tmp_path / "agent.yaml", port, agent=agent)
    log = tmp_path / "agent.log"
    proc = spawn(["agent", "-c", str(config), "--duration", "6"], log)
    assert proc.wait(60) == 0
    output = log.read_text()
    reason = f"broker unreachable (kafka.bootstrap_servers: no broker answered (127.0.0.1:{port}: connection refused))"
    assert output.count(reason) == 1, output
    no_library_noise(output)
