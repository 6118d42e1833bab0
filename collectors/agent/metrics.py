"""The agent's self-metrics, and the one place that counts and logs a collector's errors.

Metric names (Prometheus conventions; prometheus_client adds ``_total`` to counters):

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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector as PromCollector

COLLECTOR_ERRORS = "vigil_collector_errors"
COLLECTOR_SAMPLES = "vigil_collector_samples"
COLLECT_SECONDS = "vigil_collector_collect_seconds"
LAST_SUCCESS = "vigil_collector_last_success_timestamp_seconds"
PUBLISHED_RECORDS = "vigil_agent_published_records"
PUBLISHED_SAMPLES = "vigil_agent_published_samples"
DROPPED_RECORDS = "vigil_agent_dropped_records"
BUFFER_RECORDS = "vigil_agent_buffer_records"
BUFFER_BYTES = "vigil_agent_buffer_bytes"

# From a fast sysfs read (~1 ms) to a slow smartctl or a hung NVML call.
_COLLECT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

DROP_LOG_INTERVAL_S = 60.0

BufferStats = Callable[[], dict[str, int]]

log = logging.getLogger("vigil.collectors.agent")


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.errors = Counter(
            COLLECTOR_ERRORS, "Collector errors, by collector and error", ["collector", "error"], registry=registry
        )
        self.samples = Counter(COLLECTOR_SAMPLES, "Samples collected, by collector", ["collector"], registry=registry)
        self.collect_seconds = Histogram(
            COLLECT_SECONDS, "Duration of one collect() run", ["collector"], buckets=_COLLECT_BUCKETS, registry=registry
        )
        self.last_success = Gauge(LAST_SUCCESS, "Time of the last successful run", ["collector"], registry=registry)
        self.published_records = Counter(
            PUBLISHED_RECORDS, "Records acknowledged by the broker, by stream", ["stream"], registry=registry
        )
        self.published_samples = Counter(
            PUBLISHED_SAMPLES, "Telemetry samples in batches acknowledged by the broker", registry=registry
        )
        self.dropped = Counter(
            DROPPED_RECORDS, "Records the agent dropped, by stream and reason", ["stream", "reason"], registry=registry
        )
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
        log.error("dropped %d records (latest: %s, %s); see %s_total", count, stream, reason, DROPPED_RECORDS)

    def collector_error(self, collector: str, error: str, detail: str, exc: BaseException | None = None) -> None:
        """Count every occurrence; log the first of each distinct (collector, error) only."""
        self.errors.labels(collector, error).inc()
        with self._lock:
            first = (collector, error) not in self._seen
            self._seen.add((collector, error))
        if first:
            log.warning(
                "collector %s: %s%s (logged once; counted in %s_total)",
                collector,
                error,
                f": {detail}" if detail else "",
                COLLECTOR_ERRORS,
                exc_info=exc,
            )
        else:
            log.debug("collector %s: %s: %s", collector, error, detail)


class _BufferCollector(PromCollector):
    def __init__(self, stats: BufferStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        records = GaugeMetricFamily(BUFFER_RECORDS, "Records waiting for the broker", labels=["where"])
        size = GaugeMetricFamily(BUFFER_BYTES, "Bytes waiting for the broker", labels=["where"])
        for where in ("memory", "spill"):
            records.add_metric([where], stats[f"{where}_records"])
            size.add_metric([where], stats[f"{where}_bytes"])
        yield records
        yield size
