"""``vigil up`` that cannot finish starting leaves nothing behind: a start that fails after the embedded
broker is up, or a SIGTERM in the middle of starting, stops the broker (Tansu and its localbucket
storage) and exits non-zero promptly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def broker_processes(data_dir: Path) -> list[psutil.Process]:
    """The Tansu and localbucket processes serving this data_dir (by the port and folder in their argv)."""
    ports = data_dir / "broker" / "ports.json"
    kafka = f"127.0.0.1:{json.loads(ports.read_text())['kafka']}" if ports.exists() else None
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = " ".join(proc.info["cmdline"] or [])
        tansu = "tansu" in argv and kafka is not None and kafka in argv
        if tansu or ("localbucket" in argv and str(data_dir) in argv):
            found.append(proc)
    return found


def start_up(tmp_path: Path, data_dir: Path) -> subprocess.Popen[str]:
    config = tmp_path / "vigil.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "log_level": "info"}))
    cmd = [sys.executable, "-m", "vigil.cli", "up", "-c", str(config), "--duration", "60", "--report", "r.json"]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], data_dir: Path, within_s: float) -> tuple[str, list[psutil.Process]]:
    try:
        out, _ = proc.communicate(timeout=within_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    left = broker_processes(data_dir)
    for leftover in left:  # never leak a broker into the rest of the suite
        leftover.kill()
    return out, left


def test_a_start_that_fails_after_the_broker_is_up_stops_the_broker(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "run").write_text("a file where vigil up writes its effective config folder")
    out, left = finish(start_up(tmp_path, data_dir), data_dir, 60)
    assert "could not start" in out, out
    assert not left, f"broker processes left running: {[p.info['cmdline'] for p in left]}"
    assert (data_dir / "broker" / "ports.json").exists()  # the broker did start before the failure


def test_sigterm_while_starting_stops_promptly_and_leaves_no_broker(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = start_up(tmp_path, data_dir)
    pid_file = data_dir / "broker" / "tansu.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pid_file.exists(), "the broker never started"
    proc.send_signal(signal.SIGTERM)  # the broker is starting; the services are not spawned yet
    signalled = time.monotonic()
    out, left = finish(proc, data_dir, 30)
    took = time.monotonic() - signalled
    assert proc.returncode == 130, out
    assert "interrupted while starting" in out, out
    assert not left, f"broker processes left running: {[p.info['cmdline'] for p in left]}"
    assert not (data_dir / "logs").exists(), "services were spawned after the SIGTERM"
    assert took < 20, f"took {took:.1f}s to stop"
