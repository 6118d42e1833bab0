"""The alerting service: detections and predictions in, alerts stored, published and notified exactly
once per episode.

One consumer in one group reads the detections and the predictions topics, so both go through the
same steps and the same offset commit: the kernel's commit protocol (``vigil.bus.checkpoint``).
Each ``step`` runs in this fixed order (a crash between any two steps replays, never loses, and
never pages twice):

1. decode each record; a record that is not a valid ``Detection`` (detections topic) or
   ``Prediction`` (predictions topic), or whose handling raises anything, goes to ``<topic>.dlq``
   with the reason, and the next record is handled;
2. per detection, and per alert rule a prediction meets (``predictions.py``), ONE SQLite
   transaction: read the alert for its fingerprint, store the new state and enqueue its
   notifications in the outbox — committed before anything else happens;
3. publish each new or resolved ``Alert`` to the alerts topic and flush the producer (this also
   flushes the dead letters), then mark those alert versions published;
4. commit the consumer offsets (never backwards).

A replay after a crash between 2 and 4 finds the fingerprint already in that state and decides
``no_change``: no second outbox row, so no second page. Alert versions stored but not yet
published (a crash between 2 and 3) are published by the first step after a start. A failed step (the
broker away, a producer left unusable) does the same without a restart: the producer is rebuilt,
the consumer rewinds to its committed offsets and the unpublished alert versions are published
again. Notifications leave only through the outbox, one worker thread per receiver (see
``outbox.py``); finished records are pruned by retention on another thread (``retention.py``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError
from vigil.alerting.api import ApiServer, build_app
from vigil.alerting.config import AlertingConfig
from vigil.alerting.intake import Transition, decide, to_alert
from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.notifiers import Notification, Notifier, build_notifier_registry
from vigil.alerting.outbox import Backoff, OutboxDispatcher
from vigil.alerting.predictions import prediction_alerts, prediction_problem
from vigil.alerting.reader import AlertReader
from vigil.alerting.retention import Pruner
from vigil.alerting.store import AlertStore

from vigil.bus.base import Bus, Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.retry import Outage, run_with_recovery
from vigil.clock import Clock
from vigil.codec import decode, encode
from vigil.errors import InvalidEvent, RetryableError, UnexpectedEvent
from vigil.events import Alert, Detection, Prediction
from vigil.topics import Topics

log = logging.getLogger(__name__)


def build_notifiers(
    config: AlertingConfig, clock: Clock | None = None, remediation: Notifier | None = None
) -> dict[str, Notifier]:
    registry = build_notifier_registry()
    return {
        name: registry.create(cfg.type, config=cfg, clock=clock, remediation=remediation)
        for name, cfg in zip(config.notifier_names(), config.notifiers, strict=True)
    }


class AlertingService:
    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        config: AlertingConfig,
        clock: Clock,
        registry: CollectorRegistry,
        db_path: Path,
        notifiers: Mapping[str, Notifier] | None = None,
    ) -> None:
        """``notifiers`` replaces the ones built from ``config`` (tests); names must match config's."""
        self._topics = topics
        self._config = config
        self._clock = clock
        self._registry = registry
        self.db_path = db_path
        self._store = AlertStore(db_path)
        self._metrics = AlertingMetrics(registry)
        # One consumer for both streams: one group, one offset commit after the SQLite commit.
        self._expected: dict[str, type[Detection] | type[Prediction]] = {topics.detections: Detection}
        if config.predictions.enabled:
            self._expected[topics.predictions] = Prediction
        self._outage = Outage("alerting", clock, registry)
        self._changed: list[tuple[Alert, int]] = []  # alert versions of this batch, published in step 3
        self._unpublished = True  # stored alert versions may await publishing (a crash, a failed step)
        self._commits = Checkpoint(bus, list(self._expected), config.group, self, registry)
        self._producer = self._commits.producer
        self._consumer = self._commits.consumer
        names = config.notifier_names()
        self._send_resolved = {n: c.send_resolved for n, c in zip(names, config.notifiers, strict=True)}
        self.remediation = None
        if config.remediation.enabled:
            from vigil.alerting.runbooks.wiring import wire

            types = [n.type for n in config.notifiers]
            self.remediation = wire(config.remediation, names, types, db_path, bus, topics, clock, config.group,
                                    lambda: self._commits.producer)
            notifiers = {**build_notifiers(config, clock, self.remediation.receiver), **(notifiers or {})}
        self.dispatcher = _build_dispatcher(config, db_path, notifiers, clock, self._metrics)
        self.pruner = Pruner(AlertStore(db_path), config.retention, clock, self._metrics)
        self._api: ApiServer | None = None
        self._last_step_at: float | None = None
        self._pending = 0
        self.ready = threading.Event()  # set by run() once the API and the dispatcher are up
        self._refresh_gauges()

    # ------------------------------------------------------------------ the loop

    def step(self, timeout_s: float = 1.0) -> int:
        """Consume one batch (steps 1-4 of the module docstring); returns the records consumed."""
        if self._unpublished:
            self._publish_unpublished()
        records = self._commits.poll(timeout_s, self._config.max_poll_records)
        if not records:
            self._last_step_at = self._clock.now()
            return 0
        self._changed = []
        self._commits.handle(records, self._handle)
        for alert, _ in self._changed:
            self._producer.send(self._topics.alerts, encode(alert), key=alert.fingerprint.encode())
        self._commits.commit()  # flush, then save() marks the alerts published, then the offsets
        self._refresh_gauges()
        self._last_step_at = self._clock.now()
        if self._pending:
            self.dispatcher.wake()
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Serve the API, dispatch the outbox, prune and consume until ``stop`` is set; then shut down."""
        self.dispatcher.start()
        if self.remediation is not None:
            self.remediation.runner.start()
        prune_stop = threading.Event()
        pruning = threading.Thread(target=self.pruner.run, args=(prune_stop,), name="alerting-retention", daemon=True)
        pruning.start()
        reader: AlertReader | None = None
        try:
            if self._config.api.enabled:
                reader = AlertReader(self.db_path)
                app = build_app(reader, self._registry, self.health)
                self._api = ApiServer(app, self._config.api.host, self._config.api.port).start()
            self.ready.set()
            run_with_recovery(stop, self.step, self.rewind, self._outage)
        finally:
            self.dispatcher.stop()
            if self.remediation is not None:
                self.remediation.runner.stop()
            prune_stop.set()
            pruning.join(timeout=10.0)
            if self._api is not None:
                self._api.stop()
            if reader is not None:
                reader.close()
            self.close()

    def rewind(self) -> None:
        """After a failed step: a new producer, the consumer back at its committed offsets (the replay
        changes nothing already stored: ``no_change``), and stored alerts published again."""
        self._commits.rewind()
        self._changed = []  # stored, not confirmed: published again with the rest by the next step
        self._unpublished = True

    def close(self) -> None:
        """Release the consumer, producer and database (run() calls this on the way out)."""
        self._commits.close(commit=False)  # every handled batch is committed by its own step
        self.dispatcher.close()
        self.pruner.close()
        self._store.close()

    @property
    def api_port(self) -> int | None:
        """The API's bound port once ``run`` has started it (config port 0 picks a free one)."""
        return self._api.port if self._api is not None else None

    def health(self) -> dict[str, Any]:
        dispatcher_ok = self.dispatcher.alive()
        return {
            "ok": dispatcher_ok,
            "service": "alerting",
            "dispatcher_alive": dispatcher_ok,
            "outbox_pending": self._pending,
            "last_step_at": self._last_step_at,
            # Partitions this consumer holds: a restarted service is consuming again once it has some.
            "assigned": sorted(f"{tp.topic}-{tp.partition}" for tp in self._consumer.assignment()),
            **self._outage.health(),
        }

    # ------------------------------------------------------------------ the commit protocol's hooks

    def save(self, tps: set[TopicPartition], offsets: Mapping[TopicPartition, int]) -> None:
        """After the flush: the alert versions of this batch are on the alerts topic."""
        if self._changed:
            self._store.mark_published({a.fingerprint: v for a, v in self._changed})
            self._changed = []

    def assigned(self, tps: set[TopicPartition]) -> None:
        """Nothing to load: the alert store is the state, and it is not per partition."""

    def revoked(self, tps: set[TopicPartition]) -> None:
        """Nothing to forget (see ``assigned``)."""

    # ------------------------------------------------------------------ the steps

    def _handle(self, record: Record) -> None:
        """Step 1 and 2 for one record. Whatever it raises (but RetryableError) dead-letters the record."""
        try:
            event = self._decode(record)
            if isinstance(event, Detection):
                self._changed.extend(self._apply_detection(event))
            else:
                self._changed.extend(self._apply_prediction(event))
        except OperationalError as exc:  # the disk or the database, not the record: retry the batch
            raise RetryableError(f"alert store: {exc}") from exc
        except Exception as exc:
            metrics = self._metrics
            counter = metrics.predictions if record.topic == self._topics.predictions else metrics.detections
            counter.labels("invalid" if isinstance(exc, InvalidEvent) else "error").inc()
            raise

    def _decode(self, record: Record) -> Detection | Prediction:
        expected = self._expected.get(record.topic, Detection)
        event = decode(record.value)
        if not isinstance(event, Detection | Prediction) or not isinstance(event, expected):
            raise UnexpectedEvent(f"{type(event).__name__} on {record.topic}")
        problem = prediction_problem(event) if isinstance(event, Prediction) else None
        if problem is not None:  # decoded, but not something a rule can act on (probability 1.7)
            raise InvalidEvent(problem)
        return event

    def _apply_detection(self, detection: Detection) -> list[tuple[Alert, int]]:
        candidate = to_alert(detection, self._config.identity_labels, self._clock.now())
        transition, version = self._apply(candidate, escalate=False, log_unknown=True)
        self._metrics.detections.labels(transition.reason).inc()
        if transition.alert is None:
            log.info("detection for %s changes nothing (replay or duplicate)", candidate.fingerprint)
            return []
        return [(transition.alert, version)]

    def _apply_prediction(self, prediction: Prediction) -> list[tuple[Alert, int]]:
        """Each rule the prediction meets is one candidate; None (inside the hysteresis band) and a
        resolve for a fingerprint that never fired cost no write and log no skipped page."""
        candidates = prediction_alerts(prediction, self._config.predictions, self._clock.now())
        if not candidates:
            log.debug("no alert rule for predictor %r", prediction.predictor)
            self._metrics.predictions.labels("no_rule").inc()
        changed: list[tuple[Alert, int]] = []
        for candidate in candidates:
            if candidate is None:
                self._metrics.predictions.labels("no_change").inc()
                continue
            transition, version = self._apply(candidate, escalate=True, log_unknown=False)
            self._metrics.predictions.labels(transition.reason).inc()
            if transition.alert is not None:
                changed.append((transition.alert, version))
        return changed

    def _apply(self, candidate: Alert, escalate: bool, log_unknown: bool) -> tuple[Transition, int]:
        """Step 2: state change and its outbox rows commit together, or not at all."""
        now = self._clock.now()
        with self._store.transaction():
            current = self._store.get(candidate.fingerprint)
            transition = decide(current, candidate, escalate)
            version = self._store.upsert(transition.alert) if transition.alert is not None else 0
            if transition.alert is not None or current is not None or log_unknown:
                self._record(transition, candidate.fingerprint, now)
        return transition, version

    def _record(self, transition: Transition, fp: str, now: float) -> None:
        """Enqueue one outbox row per notifier that wants this reason; log ``no_change`` instead."""
        for name, send_resolved in self._send_resolved.items():
            if transition.alert is None:
                self._store.log(fp, name, transition.reason, "skipped", now)
            elif transition.reason != "resolved" or send_resolved:
                payload = Notification.from_alert(transition.alert, transition.reason, receiver=name).to_json()
                self._store.enqueue(fp, name, transition.reason, payload, now)

    def _publish_unpublished(self) -> None:
        """Alert versions stored but never confirmed on the alerts topic (a crash, a failed step)."""
        leftovers = self._store.unpublished()
        if leftovers:
            log.info("publishing %d alert states stored before a crash or a failed step", len(leftovers))
            for alert, _ in leftovers:
                self._producer.send(self._topics.alerts, encode(alert), key=alert.fingerprint.encode())
            self._producer.flush()
            self._store.mark_published({a.fingerprint: v for a, v in leftovers})
        self._unpublished = False

    def _refresh_gauges(self) -> None:
        self._pending = self._store.pending_count()
        self._metrics.outbox_pending.set(self._pending)
        self._metrics.firing.set(self._store.count("firing"))


def _build_dispatcher(
    config: AlertingConfig,
    db_path: Path,
    notifiers: Mapping[str, Notifier] | None,
    clock: Clock,
    metrics: AlertingMetrics,
) -> OutboxDispatcher:
    retry = config.retry
    rng = random.Random(retry.jitter_seed)
    backoff = Backoff(retry.initial_backoff, retry.max_backoff, retry.max_attempts, rng)
    chosen = notifiers if notifiers is not None else build_notifiers(config, clock)
    return OutboxDispatcher(db_path, chosen, clock, metrics, backoff, config.dispatch_batch, config.dispatch_interval)

