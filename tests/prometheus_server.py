"""A real Prometheus (Debian's ``prometheus`` package, which the Makefile's set-up installs) on a free loopback
port, scraping the given targets every second; stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from vigil.broker import free_port


class Prometheus:
    def __init__(self, folder: Path, targets: Mapping[str, str], interval: str = "1s") -> None:
        """``targets``: job name -> ``host:port`` of a ``/metrics``."""
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: `make test` installs Debian's prometheus package (Makefile set-up)"
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        scrape = [{"job_name": job, "static_configs": [{"targets": [t]}]} for job, t in targets.items()]
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": scrape}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        argv = [
            self.binary,
            f"--config.file={self.folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with open(self.folder / "prometheus.log", "ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self._proc.poll() is None, (self.folder / "prometheus.log").read_text()
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"Prometheus on {self.url} not ready after 60 s")

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a query Prometheus refuses)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: str = "5s") -> list[dict[str, Any]]:
        params = {"query": expr, "start": start, "end": end, "step": step}
        answer = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=10).json()
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        params = {"match[]": match}
        answer = httpx.get(f"{self.url}/api/v1/label/{label}/values", params=params, timeout=10).json()
        assert answer["status"] == "success", f"label_values({match}, {label}): {answer.get('error')}"
        values: list[str] = answer["data"]
        return values
