"""A VictoriaMetrics single-node server on loopback, for ``vigil bench sink`` and the sink's tests.

The binary is Debian's ``victoria-metrics`` (the Makefile's set-up installs it). It takes the InfluxDB
v2 write API (``/api/v2/write``), so influxdb-client writes to it as to InfluxDB, and answers PromQL
and raw exports. Flags: ``-influxSkipSingleField`` names a one-field line's series after its
measurement (``gpu_temperature_celsius``, not ``gpu_temperature_celsius_value``);
``-dedup.minScrapeInterval=1ms`` keeps one sample per series and millisecond, so a replayed write
(at-least-once) stores nothing twice; ``-search.latencyOffset=0s`` lets queries see the newest samples.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from vigil.broker import free_port, wait_for_port
from vigil.errors import VigilError
from vigil.files import open_private_append, private_dir

FLAGS = ("-influxSkipSingleField", "-dedup.minScrapeInterval=1ms", "-search.latencyOffset=0s", "-loggerLevel=ERROR")


def victoria_binary() -> str:
    found = shutil.which("victoria-metrics")
    if found is None:
        raise VigilError("victoria-metrics is not installed (`make test` installs Debian's victoria-metrics)")
    return found


class VictoriaMetrics:
    """Started on a free loopback port (kept across ``restart``) with its data under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.dir = data_dir
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> VictoriaMetrics:
        private_dir(self.dir)
        argv = [
            victoria_binary(),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.dir / 'data'}",
            *FLAGS,
        ]
        with os.fdopen(open_private_append(self.dir / "victoria-metrics.log"), "ab") as log_file:
            self._proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, timeout_s, self._proc)
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise VigilError(f"VictoriaMetrics on {self.url} not healthy after {timeout_s:.0f}s")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # it flushes its in-memory rows to disk on the way out
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
