"""The agent's self-metrics, and the one place that counts and logs a collector's errors.

Metrics (their names, help and labels are in ``vigil.metrics_catalog``):

- ``vigil_collector_errors_total{collector,error}``: a Problem item, an exception escaping
  ``collect()`` (error = its class name), a run abandoned after its timeout (``timeout``).
- ``vigil_collector_samples_total{collector}``, ``vigil_collector_collect_seconds{collector}``
  (histogram), ``vigil_collector_last_success_timestamp_seconds{collector}``.
- ``vigil_agent_published_records_total{stream}`` and ``vigil_agent_published_samples_total``:
  acknowledged by the broker (a telemetry record is one batch).
- ``vigil_agent_dropped_records_total{stream,reason}``: what the buffer could not keep.
- ``vigil_agent_buffer_records{where}``, ``vigil_agent_buffer_bytes{where}`` (where = memory|spill):
  read from the buffer when scraped, so the hot path pays nothing for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

from vigil.metrics_catalog import counter, gauge, gauge_family, histogram

DROP_LOG_INTERVAL_S = 60.0

BufferStats = Callable[[], dict[str, int]]

log = logging.getLogger("vigil.collectors.agent")


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.errors = counter(registry, "vigil_collector_errors_total")
        self.samples = counter(registry, "vigil_collector_samples_total")
        self.collect_seconds = histogram(registry, "vigil_collector_collect_seconds")
        self.last_success = gauge(registry, "vigil_collector_last_success_timestamp_seconds")
        self.published_records = counter(registry, "vigil_agent_published_records_total")
        self.published_samples = counter(registry, "vigil_agent_published_samples_total")
        self.dropped = counter(registry, "vigil_agent_dropped_records_total")
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._drops_unlogged = 0
        self._drop_logged_at = float("-inf")

    def watch_buffer(self, stats: BufferStats) -> None:
        self.registry.register(_BufferCollector(stats))

    def record_drop(self, stream: str, reason: str, count: int) -> None:
        """Count dropped records; log the first drop, then at most one summary a minute."""
        self.dropped.labels(stream, reason).inc(count)
        with self._lock:
            self._drops_unlogged += count
            now = time.monotonic()
            if now - self._drop_logged_at < DROP_LOG_INTERVAL_S:
                return
            count, self._drops_unlogged, self._drop_logged_at = self._drops_unlogged, 0, now
        log.error("dropped %d records (latest: %s, %s); see vigil_agent_dropped_records_total", count, stream, reason)

    def collector_error(self, collector: str, error: str, detail: str, exc: BaseException | None = None) -> None:
        """Count every occurrence; log the first of each distinct (collector, error) only."""
        self.errors.labels(collector, error).inc()
        with self._lock:
            first = (collector, error) not in self._seen
            self._seen.add((collector, error))
        if first:
            log.warning(
                "collector %s: %s%s (logged once; counted in vigil_collector_errors_total)",
                collector,
                error,
                f": {detail}" if detail else "",
                exc_info=exc,
            )
        else:
            log.debug("collector %s: %s: %s", collector, error, detail)


class _BufferCollector(PromCollector):
    def __init__(self, stats: BufferStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        records = gauge_family("vigil_agent_buffer_records")
        size = gauge_family("vigil_agent_buffer_bytes")
        for where in ("memory", "spill"):
            records.add_metric([where], stats[f"{where}_records"])
            size.add_metric([where], stats[f"{where}_bytes"])
        yield records
        yield size
