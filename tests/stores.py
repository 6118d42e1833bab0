"""Real stores for the Influx sink's tests, on loopback: InfluxDB 1.x (Debian's ``influxd``) and
VictoriaMetrics (``vigil.cli.victoria``), with the queries that read back what the sink wrote.
Each server is stopped by its own PID; none listens beyond 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from vigil.broker import free_port, wait_for_port

# InfluxDB 1.6 keeps data, WAL and meta under one folder; only HTTP is bound (the RPC port too, to loopback).
INFLUX_CONF = """reporting-enabled = false
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = false
[logging]
  level = "warn"
"""


class InfluxDB1:
    def __init__(self, folder: Path, auth: bool = False) -> None:
        binary = shutil.which("influxd")
        if binary is None:
            pytest.fail("influxd is not installed: `make test` installs Debian's influxdb")
        self.binary, self.dir, self.auth = binary, folder, auth
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InfluxDB1:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "influxdb.conf"
        auth = "true" if self.auth else "false"
        conf.write_text(INFLUX_CONF.format(rpc=free_port(), dir=self.dir, port=self.port, auth=auth))
        log = (self.dir / "influxd.log").open("ab")
        self._proc = subprocess.Popen([self.binary, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 30, self._proc)
        poll(lambda: httpx.get(f"{self.url}/ping", timeout=2).status_code == 204, 30, "influxd /ping")
        return self

    def query(self, q: str, db: str = "", auth: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """The ``series`` of an InfluxQL statement's result (timestamps in ns)."""
        params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
        response = httpx.post(f"{self.url}/query", params=params, auth=auth, timeout=10)
        response.raise_for_status()
        (result,) = response.json()["results"]
        assert "error" not in result, result
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def export(url: str, match: str, start: float | None = None) -> list[dict[str, Any]]:
    """VictoriaMetrics' raw samples of every series ``match`` selects: metric labels, values, ms timestamps."""
    params = {"match[]": match, **({"start": f"{start:.3f}"} if start is not None else {})}
    response = httpx.get(f"{url}/api/v1/export", params=params, timeout=30)
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def vm_metric(url: str, name: str) -> float:
    """A sample of VictoriaMetrics' own /metrics (``vm_rows_inserted_total{type="influx"}``)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def poll(check: Callable[[], object], timeout_s: float, what: str, every_s: float = 0.2) -> object:
    """``check()`` until it returns something true (exceptions count as not yet), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (httpx.HTTPError, OSError, AssertionError, KeyError) as exc:
            last = exc
        time.sleep(every_s)
    pytest.fail(f"{what}: not within {timeout_s:.0f}s (last: {last!r})")
