"""The canary service (``vigil canary``): probes on their schedule and after remediations, results to
Kafka, judgements to alerting.

```
scheduler (step, main thread)                       rounds (a thread pool, one probe at a time each)
  1. poll vigil.remediation.v1 (Checkpoint):           run_round per arm -> ProbeResult
     a run on a probed node/model ends -> round now     Board.add -> judgements -> Detections
  2. start due rounds on the pool                        metrics; results + detections -> pending
  3. send pending: ProbeResult -> vigil.probes.v1 (key: target), Detection -> vigil.detections.v1
  4. commit: flush, then the remediation offsets; sent records leave the pending queue only now
```

A broker outage stops nothing but step 3-4: rounds go on, their records wait in the pending queue
(bounded by ``canary.buffer``; beyond it the oldest are dropped and counted) and are sent once the
broker answers (``run_with_recovery`` rewinds: a new producer, the consumer at its committed offsets).
A failed judgement is a ``CanaryFailed`` detection, so the incident engine opens the incident and
the canary runbooks (alerting/runbooks/canary-*.yaml) roll back or take the node out of serving.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from vigil.alerting.canary.board import Board
from vigil.alerting.canary.clients import client_for
from vigil.alerting.canary.config import CanaryConfig
from vigil.alerting.canary.judge import judge, sample
from vigil.alerting.canary.metrics import CanaryMetrics
from vigil.alerting.canary.rounds import run_round
from vigil.alerting.canary.spec import Probe, load_paths

from vigil.bus.base import Bus, Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.retry import Outage, run_with_recovery
from vigil.clock import Clock
from vigil.codec import decode, encode
from vigil.errors import RetryableError
from vigil.events import ProbeResult, RemediationRun
from vigil.topics import Topics

log = logging.getLogger(__name__)
# A remediation in one of these states has acted (or given up): ask the model again now.
AFTER_REMEDIATION = frozenset({"verifying", "succeeded", "failed", "escalated", "stopped"})


class _Stateless:
    """The canary keeps nothing beside its offsets (windows restart with the process)."""

    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        return None

    def assigned(self, tps: set[TopicPartition]) -> None:
        return None

    def revoked(self, tps: set[TopicPartition]) -> None:
        return None


class CanaryService:
    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        config: CanaryConfig,
        clock: Clock,
        registry: CollectorRegistry,
        cluster: str = "default",
        probes: list[Probe] | None = None,
    ) -> None:
        self.config, self._clock, self._topics = config, clock, topics
        self.probes = probes if probes is not None else load_paths(config.probes)
        self.board = Board(self.probes, cluster, clock.now)
        self.metrics = CanaryMetrics(registry)
        self.outage = Outage("canary", clock, registry)
        self.commits = Checkpoint(bus, [topics.name("remediation")], config.group, _Stateless(), registry)
        self._http = httpx.Client(limits=httpx.Limits(max_connections=4 * config.workers))
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix="canary-round")
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, str, bytes, bytes]] = deque()  # (seq, topic, key, value)
        self._seq = 0
        self._due = {p.name: clock.monotonic() for p in self.probes}  # the first round at once
        self._running: set[str] = set()
        self._wanted: dict[str, str] = {}  # probe -> trigger of a round asked for out of schedule
        self._numbers: dict[str, int] = {}
        self._seen_runs: set[tuple[str, str]] = set()
        self._last_step = clock.monotonic()
        self._closed = False

    # ------------------------------------------------------------------ rounds

    def round_now(self, probe: Probe, trigger: str = "manual") -> list[ProbeResult]:
        """One round of every arm of ``probe`` (here, now), judged, its records queued for the broker."""
        number = self._numbers[probe.name] = self._numbers.get(probe.name, 0) + 1
        client = client_for(probe, self._http)
        results = [run_round(probe, arm, client, number, self._clock.now, trigger) for arm in probe.arms]
        with self._lock:
            detections = self.board.add(results)
            for result in results:
                self.metrics.observe(result)
                self._queue(self._topics.name("probes"), result.target, encode(result))
            for name, arm, judgement in self.board.judgements:
                self.metrics.judged(name, arm, judgement.verdict)
            for detection in detections:
                self._queue(self._topics.detections, detection.series, encode(detection))
                log.warning("canary %s: %s", detection.decision, detection.summary)
        return results

    def _queue(self, topic: str, key: str, value: bytes) -> None:
        if len(self._pending) >= self.config.buffer:
            self._pending.popleft()
            self.metrics.dropped.inc()
        self._seq += 1
        self._pending.append((self._seq, topic, key.encode(), value))
        self.metrics.pending.set(len(self._pending))

    def _round_in_pool(self, probe: Probe, trigger: str) -> None:
        try:
            self.round_now(probe, trigger)
        except Exception:
            log.exception("canary round of %s failed", probe.name)
        finally:
            with self._lock:
                self._running.discard(probe.name)

    def _start_due(self) -> None:
        now = self._clock.monotonic()
        for probe in self.probes:
            with self._lock:
                if probe.name in self._running:
                    continue
                trigger = self._wanted.pop(probe.name, None)
                if trigger is None and now < self._due[probe.name]:
                    continue
                self._running.add(probe.name)
                self._due[probe.name] = now + probe.schedule.interval
            self._pool.submit(self._round_in_pool, probe, trigger or "schedule")

    # ------------------------------------------------------------------ the remediation topic

    def _on_remediation(self, record: Record) -> None:
        event = decode(record.value)
        if not isinstance(event, RemediationRun) or event.state not in AFTER_REMEDIATION:
            return
        if (event.run_id, event.state) in self._seen_runs:
            return
        self._seen_runs.add((event.run_id, event.state))
        for probe in self.probes:
            if _touches(probe, event.labels):
                log.info("canary %s: round after remediation %s (%s)", probe.name, event.run_id, event.state)
                with self._lock:
                    self._wanted[probe.name] = "remediation"

    # ------------------------------------------------------------------ the loop

    def step(self) -> None:
        """Steps 1-4 of the module docstring; raises RetryableError while the broker is away."""
        self._last_step = self._clock.monotonic()
        records = self.commits.poll(self.config.poll)
        self.commits.handle(records, self._on_remediation)
        self._start_due()
        self.publish()

    def publish(self) -> None:
        with self._lock:
            batch = list(self._pending)
        for _, topic, key, value in batch:
            self.commits.producer.send(topic, value, key=key)
        self.commits.commit()
        if batch:
            sent = batch[-1][0]
            with self._lock:
                while self._pending and self._pending[0][0] <= sent:
                    self._pending.popleft()
                self.metrics.pending.set(len(self._pending))

    def run(self, stop: threading.Event) -> None:
        try:
            run_with_recovery(stop, self.step, self.commits.rewind, self.outage)
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.publish()
        except RetryableError as exc:
            log.warning("canary: %d records not published at shutdown: %s", len(self._pending), exc)
        self.commits.close(commit=False)
        self._http.close()

    def health(self) -> dict[str, object]:
        age = self._clock.monotonic() - self._last_step
        return {
            "ok": not self._closed and age < 60.0,
            "probes": [p.name for p in self.probes],
            "pending": len(self._pending),
            "last_step_age_s": round(age, 3),
            "verdicts": {f"{s.probe}@{s.arm}": s.verdict for s in self.board.status.values()},
            **self.outage.health(),
        }


def _touches(probe: Probe, labels: Mapping[str, str]) -> bool:
    """A remediation touched this probe's model or one of its serving nodes."""
    if labels.get("probe") == probe.name:
        return True
    if probe.server is not None and labels.get("server") == probe.server:
        return True
    host = labels.get("host")
    return host is not None and any(arm.node == host for arm in probe.arms)


def run_once(probes: list[Probe], now: Any) -> dict[str, Any]:
    """``vigil canary run``: one round of every probe, judged on that round alone (floors, and each arm
    against its baseline's round), as plain JSON."""
    out: list[dict[str, Any]] = []
    with httpx.Client() as http:
        for probe in probes:
            client = client_for(probe, http)
            results = [run_round(probe, arm, client, 1, now, "manual") for arm in probe.arms]
            by_arm = {r.target.split("@", 1)[1]: r for r in results}
            verdicts = {}
            for arm, result in by_arm.items():
                base = by_arm.get(probe.baseline) if probe.baseline and arm != probe.baseline else None
                judgement = judge(sample([result]), sample([base]) if base else None, probe.criteria)
                verdicts[arm] = judgement.to_json()
            out.append({"probe": probe.name, "results": [_plain(r) for r in results], "judgements": verdicts})
    return {"probes": out, "ok": all(r["ok"] for p in out for r in p["results"])}


def _plain(result: ProbeResult) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(encode(result))
    body.pop("type", None)
    body.pop("v", None)
    return body


