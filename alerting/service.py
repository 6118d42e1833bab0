"""The alerting service: detections and predictions in, alerts stored, published and notified exactly
once per episode.

One consumer in one group reads the detections and the predictions topics, so both go through the
same steps and the same offset commit. Each ``step`` commits in this fixed order (a crash between
any two steps replays, never loses, and never pages twice):

1. decode each record; a record that is not a valid ``Detection`` (detections topic) or
   ``Prediction`` (predictions topic) goes to ``<topic>.dlq``;
2. per detection, and per alert rule a prediction meets (``predictions.py``), ONE SQLite
   transaction: read the alert for its fingerprint, store the new state and enqueue its
   notifications in the outbox — committed before anything else happens;
3. publish each new or resolved ``Alert`` to the alerts topic and flush the producer (this also
   flushes the dead letters), then mark those alert versions published;
4. commit the consumer offsets.

A replay after a crash between 2 and 4 finds the fingerprint already in that state and decides
``no_change``: no second outbox row, so no second page. Alert versions stored but not yet
published (a crash between 2 and 3) are published when the service starts. Notifications leave
only through the outbox dispatcher thread (see ``outbox.py``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from vigil.alerting.api import ApiServer, build_app
from vigil.alerting.config import AlertingConfig
from vigil.alerting.intake import Transition, decide, to_alert
from vigil.alerting.metrics import AlertingMetrics
from vigil.alerting.notifiers import Notification, Notifier, build_notifier_registry
from vigil.alerting.outbox import Backoff, OutboxDispatcher
from vigil.alerting.predictions import prediction_alerts, prediction_problem
from vigil.alerting.store import AlertReader, AlertStore

from vigil.bus.base import Bus, DeadLetters, Record, TopicPartition
from vigil.clock import Clock
from vigil.codec import decode, encode
from vigil.errors import InvalidEvent, RetryableError
from vigil.events import Alert, Detection, Prediction
from vigil.topics import Topics

log = logging.getLogger(__name__)


def build_notifiers(config: AlertingConfig, clock: Clock | None = None) -> dict[str, Notifier]:
    registry = build_notifier_registry()
    return {
        name: registry.create(cfg.type, config=cfg, clock=clock)
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
        self._producer = bus.producer()
        self._dead_letters = DeadLetters(self._producer, registry)
        # One consumer for both streams: one group, one offset commit after the SQLite commit.
        self._expected: dict[str, type[Detection] | type[Prediction]] = {topics.detections: Detection}
        if config.predictions.enabled:
            self._expected[topics.predictions] = Prediction
        self._consumer = bus.consumer(list(self._expected), config.group)
        names = config.notifier_names()
        self._send_resolved = {n: c.send_resolved for n, c in zip(names, config.notifiers, strict=True)}
        self.dispatcher = _build_dispatcher(config, db_path, notifiers, clock, self._metrics)
        self._api: ApiServer | None = None
        self._dispatch_thread: threading.Thread | None = None
        self._last_step_at: float | None = None
        self._pending = 0
        self.ready = threading.Event()  # set by run() once the API and the dispatcher are up
        self._publish_unpublished()
        self._refresh_gauges()

    # ------------------------------------------------------------------ the loop

    def step(self, timeout_s: float = 1.0) -> int:
        """Consume one batch (steps 1-4 of the module docstring); returns the records consumed."""
        records = self._consumer.poll(timeout_s, self._config.max_poll_records)
        if not records:
            self._last_step_at = self._clock.now()
            return 0
        changed: list[tuple[Alert, int]] = []
        for record in records:
            event = self._decode(record)
            if isinstance(event, Detection):
                changed.extend(self._apply_detection(event))
            elif isinstance(event, Prediction):
                changed.extend(self._apply_prediction(event))
        self._publish(changed)
        self._consumer.commit(_next_offsets(records))
        self._refresh_gauges()
        self._last_step_at = self._clock.now()
        if self._pending:
            self.dispatcher.wake()
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Serve the API, dispatch the outbox and consume until ``stop`` is set; then shut down."""
        dispatch_stop = threading.Event()
        self._dispatch_thread = threading.Thread(
            target=self.dispatcher.run, args=(dispatch_stop,), name="alerting-outbox", daemon=True
        )
        self._dispatch_thread.start()
        reader: AlertReader | None = None
        try:
            if self._config.api.enabled:
                reader = AlertReader(self.db_path)
                app = build_app(reader, self._registry, self.health)
                self._api = ApiServer(app, self._config.api.host, self._config.api.port).start()
            self.ready.set()
            while not stop.is_set():
                try:
                    self.step()
                except RetryableError as exc:  # broker away: the batch is uncommitted and will replay
                    log.warning("alerting step failed, retrying: %s", exc)
                    stop.wait(1.0)
        finally:
            dispatch_stop.set()
            self.dispatcher.wake()
            self._dispatch_thread.join(timeout=10.0)
            if self._api is not None:
                self._api.stop()
            if reader is not None:
                reader.close()
            self.close()

    def close(self) -> None:
        """Release the consumer, producer and database (run() calls this on the way out)."""
        self._consumer.close()
        self._producer.close()
        if self._dispatch_thread is None or not self._dispatch_thread.is_alive():
            self.dispatcher.close()
        self._store.close()

    @property
    def api_port(self) -> int | None:
        """The API's bound port once ``run`` has started it (config port 0 picks a free one)."""
        return self._api.port if self._api is not None else None

    def health(self) -> dict[str, Any]:
        thread = self._dispatch_thread
        dispatcher_ok = thread is None or thread.is_alive()
        return {
            "ok": dispatcher_ok,
            "service": "alerting",
            "dispatcher_alive": dispatcher_ok,
            "outbox_pending": self._pending,
            "last_step_at": self._last_step_at,
        }

    # ------------------------------------------------------------------ the steps

    def _decode(self, record: Record) -> Detection | Prediction | None:
        expected = self._expected.get(record.topic, Detection)
        try:
            event = decode(record.value)
        except InvalidEvent as exc:
            self._reject(record, "invalid_event", str(exc))
            return None
        if not isinstance(event, Detection | Prediction) or not isinstance(event, expected):
            self._reject(record, "unexpected_type", f"{type(event).__name__} on {record.topic}")
            return None
        problem = prediction_problem(event) if isinstance(event, Prediction) else None
        if problem is not None:  # decoded, but not something a rule can act on (probability 1.7)
            self._reject(record, "invalid_event", problem)
            return None
        return event

    def _reject(self, record: Record, reason: str, detail: str) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, detail)
        self._dead_letters.send(record, reason, detail)
        counter = self._metrics.predictions if record.topic == self._topics.predictions else self._metrics.detections
        counter.labels("invalid").inc()

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

    def _publish(self, changed: list[tuple[Alert, int]]) -> None:
        """Step 3: every transition goes on the alerts topic in order, keyed by fingerprint."""
        for alert, _ in changed:
            self._producer.send(self._topics.alerts, encode(alert), key=alert.fingerprint.encode())
        self._producer.flush()
        if changed:
            self._store.mark_published({a.fingerprint: v for a, v in changed})

    def _publish_unpublished(self) -> None:
        leftovers = self._store.unpublished()
        if leftovers:
            log.info("publishing %d alert states stored before a crash", len(leftovers))
            self._publish(leftovers)

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


def _next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        offsets[record.tp] = max(offsets.get(record.tp, 0), record.offset + 1)
    return offsets
