"""The dcgm collector scraping a real HTTP server on 127.0.0.1 that serves the captured exporter output."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.gpu.dcgm import DcgmCollector, DcgmOptions

from tests.gpu_fixtures import fixtures_dir

pytestmark = pytest.mark.integration
CTX = CollectorContext(host="node-a")


@pytest.fixture
def exporter() -> Iterator[tuple[str, list[str]]]:
    """A dcgm-exporter stand-in: /metrics is the captured scrape, /broken a 500, /slow never answers
    in time. Yields its base URL and the request paths it saw."""
    folder = fixtures_dir("dcgm-exporter")
    if folder is None:
        pytest.skip("shared datasets are not present (set VIGIL_DATASETS)")
    body = (folder / "metrics-sample.txt").read_bytes()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == "/slow":
                time.sleep(1.0)
            status = 200 if self.path in ("/metrics", "/slow") else 500
            payload = body if status == 200 else b"internal error\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scrapes_the_captured_exporter_over_http(exporter: tuple[str, list[str]]) -> None:
    base, seen = exporter
    collector = DcgmCollector(CTX, DcgmOptions(url=f"{base}/metrics", timeout=5))
    for _ in range(2):  # a kept-alive client scrapes again
        samples = {i[0]: i[1] for i in collector.collect() if isinstance(i, tuple)}
        assert samples['gpu_sm_clock_hertz{gpu_index="0"}'] == 300e6
        assert samples['gpu_energy_joules_total{gpu_index="0"}'] == pytest.approx(128996.013)
        assert samples['gpu_memory_free_bytes{gpu_index="0"}'] == 15109 * float(1 << 20)
    assert seen == ["/metrics", "/metrics"]


def test_http_errors_and_timeouts_are_problems(exporter: tuple[str, list[str]]) -> None:
    base, _ = exporter
    broken = list(DcgmCollector(CTX, DcgmOptions(url=f"{base}/broken")).collect())
    assert [(p.error, p.detail.endswith("HTTP 500")) for p in broken if isinstance(p, Problem)] == [
        ("http_status", True)
    ]
    slow = list(DcgmCollector(CTX, DcgmOptions(url=f"{base}/slow", timeout=0.2)).collect())
    assert [p.error for p in slow if isinstance(p, Problem)] == ["timeout"] and len(slow) == 1


def test_http_and_file_sources_map_the_same_scrape_identically(exporter: tuple[str, list[str]]) -> None:
    base, _ = exporter
    folder = fixtures_dir("dcgm-exporter")
    assert folder is not None
    over_http = list(DcgmCollector(CTX, DcgmOptions(url=f"{base}/metrics")).collect())
    from_file = list(DcgmCollector(CTX, DcgmOptions(file=folder / "metrics-sample.txt")).collect())
    assert [i for i in over_http if isinstance(i, tuple)] == [i for i in from_file if isinstance(i, tuple)]
    assert len(over_http) > 40
