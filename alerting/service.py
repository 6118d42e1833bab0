"""The alerting service: detections and predictions in, incidents out, each told exactly once.

One consumer in one group reads the detections and the predictions topics through the kernel's
commit protocol (``vigil.bus.checkpoint``). Each ``step`` runs in this fixed order (a crash between
any two steps replays, never loses, and never pages twice):

1. decode each record into candidate alerts; a record that is not a valid ``Detection``
   (detections topic) or ``Prediction`` (predictions topic), or whose conversion raises, goes to
   ``<topic>.dlq`` with the reason, and the next record is handled;
2. run the whole poll's candidates through the incident engine (``engine.py``, the pipeline of
   ``pipeline/build.py``) in ONE store transaction: alert states, incidents, notification groups
   and the outbox rows of the notifications they cause commit together, before anything else
   happens. Should the batch raise, its records are run one by one and the one that raises is
   dead-lettered (a database error is the disk's fault, not the record's: the batch is retried);
3. publish each changed ``Alert`` to the alerts topic and flush the producer (this also flushes
   the dead letters), then mark those alert versions published;
4. commit the consumer offsets (never backwards).

Then the engine's timers run (``group_wait``, ``group_interval``, ``repeat_interval``, escalations).
A replay after a crash between 2 and 4 finds every alert already in its state: ``no_change``, no
second outbox row, no second page. Alert versions stored but not yet published (a crash between 2
and 3, a failed step) are published by the first step after a start or a rewind. Notifications
leave only through the outbox, one worker thread per receiver integration (``outbox.py``).
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
from vigil.alerting.engine import Engine
from vigil.alerting.intake import to_alert
from vigil.alerting.metrics import AlertingMetrics, StoreGauges
from vigil.alerting.notifiers import Notifier, build_notifier_registry
from vigil.alerting.outbox import Backoff, OutboxDispatcher
from vigil.alerting.pipeline.base import Batch, Candidate
from vigil.alerting.predictions import prediction_alerts, prediction_problem
from vigil.alerting.reader import AlertReader
from vigil.alerting.retention import Pruner
from vigil.alerting.store import AlertStore, Database

from vigil.bus.base import Bus, Record, TopicPartition
from vigil.bus.checkpoint import Checkpoint
from vigil.bus.retry import Outage, run_with_recovery
from vigil.clock import Clock
from vigil.codec import decode, encode
from vigil.errors import InvalidEvent, RetryableError, UnexpectedEvent
from vigil.events import Alert, Detection, Prediction
from vigil.topics import Topics

log = logging.getLogger(__name__)
POLL_TIMEOUT_S = 1.0


def build_notifiers(
    config: AlertingConfig, clock: Clock | None = None, remediation: Notifier | None = None
) -> dict[str, Notifier]:
    registry = build_notifier_registry()
    return {
        name: registry.create(cfg.type, config=cfg, clock=clock, remediation=remediation)
        for name, cfg in config.integrations().items()
    }


def open_database(config: AlertingConfig, db_path: Path) -> Database:
    """PostgreSQL when ``alerting.store.url`` is set, else the SQLite file at ``db_path``."""
    return Database.open(config.store.url.reveal() if config.store.url is not None else db_path)


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
        self.database = open_database(config, db_path)
        self._store = AlertStore(self.database)  # this thread's own: publication marks, gauges
        # The engine's connection is used under its lock, by this thread and the API's intake alike.
        self.engine = Engine(config, AlertStore(self.database), clock)
        self._metrics = AlertingMetrics(registry)
        # One consumer for both streams: one group, one offset commit after the store's commit.
        self._expected: dict[str, type[Detection] | type[Prediction]] = {topics.detections: Detection}
        if config.predictions.enabled:
            self._expected[topics.predictions] = Prediction
        self._outage = Outage("alerting", clock, registry)
        self._changed: list[tuple[Alert, int]] = []  # alert versions of this batch, published in step 3
        self._unpublished = True  # stored alert versions may await publishing (a crash, a failed step)
        self._republish = threading.Event()  # the API's intake stored alerts: publish them next step
        self._commits = Checkpoint(bus, list(self._expected), config.group, self, registry)
        self._watch = self._commits.watch(clock, config.health, POLL_TIMEOUT_S)
        self._producer = self._commits.producer
        self._consumer = self._commits.consumer
        self.remediation = None
        if config.remediation.enabled:
            from vigil.alerting.runbooks.wiring import wire

            integrations = config.integrations()
            self.remediation = wire(config.remediation, list(integrations), [c.type for c in integrations.values()],
                                    self.database, bus, topics, clock, config.group, lambda: self._commits.producer)
            notifiers = {**build_notifiers(config, clock, self.remediation.receiver), **(notifiers or {})}
        self.dispatcher = _build_dispatcher(config, self.database, notifiers, clock, self._metrics)
        self.pruner = Pruner(AlertStore(self.database), config.retention, clock, self._metrics)
        self._gauges = StoreGauges(self.database, list(config.integrations()), clock)
        registry.register(self._gauges)
        self._api: ApiServer | None = None
        self._last_step_at: float | None = None
        self._pending = 0
        self.ready = threading.Event()  # set by run() once the API and the dispatcher are up
        self._count_pending()

    # ------------------------------------------------------------------ the loop

    def step(self, timeout_s: float = POLL_TIMEOUT_S) -> int:
        """Consume one batch (steps 1-4 of the module docstring), then run due timers; returns the
        records consumed."""
        if self._republish.is_set():
            self._republish.clear()  # cleared first: a batch the intake commits meanwhile sets it again
            self._unpublished = True
        if self._unpublished:
            self._publish_unpublished()
        records = self._commits.poll(timeout_s, self._config.max_poll_records)
        if records:
            self._changed = []
            candidates = self._commits.handle(records, self._candidates)
            self._changed = self._ingest(records, candidates)
            for alert, _ in self._changed:
                self._producer.send(self._topics.alerts, encode(alert), key=alert.fingerprint.encode())
            self._commits.commit()  # flush, then save() marks the alerts published, then the offsets
        self.run_timers()
        self._count_pending()
        self._last_step_at = self._clock.now()
        if self._pending:
            self.dispatcher.wake()
        return len(records)

    def run_timers(self) -> None:
        due = self.engine.next_timer()
        if due is not None and due <= self._clock.now():
            try:
                self.engine.tick()
            except OperationalError as exc:
                raise RetryableError(f"alert store: {exc}") from exc

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
                reader = AlertReader(self.database)
                app = build_app(reader, self._registry, self.health, self.engine, self._republish.set, self._routers())
                self._api = ApiServer(app, self._config.api.host, self._config.api.port).start()
                log.info("alerting API on %s (/api/v1/alerts, /metrics, /healthz)", self._api.url)
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

    def _routers(self) -> list[Any]:
        """The remediation approvals API, when remediation is on (its provider has a store connection of its own)."""
        if self.remediation is None:
            return []
        from vigil.alerting.runbooks.approvals_api import approvals_router
        from vigil.alerting.runbooks.engine import Remediation
        from vigil.alerting.runbooks.runner import Approvals

        engine = Remediation(self.remediation.parts, AlertStore(self.database))
        return [approvals_router(Approvals(engine, self.remediation.runner.wake))]

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
        self.engine.store.close()
        self._gauges.close()
        self._store.close()

    @property
    def api_port(self) -> int | None:
        """The API's bound port once ``run`` has started it (config port 0 picks a free one)."""
        return self._api.port if self._api is not None else None

    def health(self) -> dict[str, Any]:
        """``ok`` false when an outbox worker died, polling stalled or the lag keeps growing."""
        dispatcher_ok = self.dispatcher.alive()
        consumer = self._watch.health(outage=self._outage.down_since is not None)
        return {
            "service": "alerting",
            **consumer,
            "ok": dispatcher_ok and bool(consumer["ok"]),
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

    def _candidates(self, record: Record) -> tuple[Record, list[Candidate]]:
        """Step 1 for one record. Whatever it raises (but RetryableError) dead-letters the record."""
        try:
            event = self._decode(record)
            if isinstance(event, Detection):
                alert = to_alert(event, self._config.identity_labels, self._clock.now())
                return record, [Candidate(alert, "detection")]
            found = prediction_alerts(event, self._config.predictions, self._clock.now())
            if not found:
                self._metrics.predictions.labels("no_rule").inc()
            for _ in (c for c in found if c is None):
                self._metrics.predictions.labels("no_change").inc()  # inside the hysteresis band
            return record, [Candidate(a, "prediction", escalate=True) for a in found if a is not None]
        except Exception as exc:
            counter = self._counter(record)
            counter.labels("invalid" if isinstance(exc, InvalidEvent) else "error").inc()
            raise

    def _ingest(self, records: list[Record], handled: list[tuple[Record, list[Candidate]]]) -> list[tuple[Alert, int]]:
        """Step 2: the poll's candidates in one engine batch; should it raise, record by record."""
        try:
            batch = self.engine.ingest([c for _, cs in handled for c in cs])
        except OperationalError as exc:  # the disk or the database, not the records: retry the batch
            raise RetryableError(f"alert store: {exc}") from exc
        except Exception:
            log.exception("a batch of %d records failed in the engine; handling them one by one", len(records))
            changed: list[tuple[Alert, int]] = []
            for record, candidates in handled:
                one = self._commits.guard(record, lambda r, cs=candidates: self._ingest_one(r, cs))  # type: ignore[misc]
                changed.extend(one or [])
            return changed
        self._count(handled, batch)
        return batch.changed

    def _ingest_one(self, record: Record, candidates: list[Candidate]) -> list[tuple[Alert, int]]:
        try:
            batch = self.engine.ingest(candidates)
        except OperationalError as exc:
            raise RetryableError(f"alert store: {exc}") from exc
        except Exception:
            self._counter(record).labels("error").inc()
            raise
        self._count([(record, candidates)], batch)
        return batch.changed

    def _count(self, handled: list[tuple[Record, list[Candidate]]], batch: Batch) -> None:
        for record, candidates in handled:
            for c in candidates:
                self._counter(record).labels(c.reason or "no_change").inc()

    def _counter(self, record: Record) -> Any:
        metrics = self._metrics
        return metrics.predictions if record.topic == self._topics.predictions else metrics.detections

    def _decode(self, record: Record) -> Detection | Prediction:
        expected = self._expected.get(record.topic, Detection)
        event = decode(record.value)
        if not isinstance(event, Detection | Prediction) or not isinstance(event, expected):
            raise UnexpectedEvent(f"{type(event).__name__} on {record.topic}")
        problem = prediction_problem(event) if isinstance(event, Prediction) else None
        if problem is not None:  # decoded, but not something a rule can act on (probability 1.7)
            raise InvalidEvent(problem)
        return event

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

    def _count_pending(self) -> None:
        self._pending = self._store.pending_count()


def _build_dispatcher(
    config: AlertingConfig,
    database: Database,
    notifiers: Mapping[str, Notifier] | None,
    clock: Clock,
    metrics: AlertingMetrics,
) -> OutboxDispatcher:
    retry = config.retry
    rng = random.Random(retry.jitter_seed)
    backoff = Backoff(retry.initial_backoff, retry.max_backoff, retry.max_attempts, rng)
    chosen = notifiers if notifiers is not None else build_notifiers(config, clock)
    return OutboxDispatcher(database, chosen, clock, metrics, backoff, config.dispatch_batch, config.dispatch_interval)
