"""The simulator's side of the actions topic: ``ActionRequest`` records in, bad records set aside.

A consumer (group ``<sim group>``) reads the actions topic. On the broker its ``poll`` can block for
seconds while the group forms, which must not stall the fleet's clock, so ``run`` polls on its own
thread and the runner takes what arrived at each tick; on the in-memory bus (scenario tests, one
thread) ``take`` polls inline. A record that is not a valid ``ActionRequest`` is handed to the runner
as a reject, which dead-letters it on the tick thread (the only thread that uses the producer).

Offsets are committed only for requests whose tick, and so whose report, the broker has confirmed
(``delivered``): a simulator killed before that is asked again when it restarts. Kafka consumers are
not thread-safe, so every consumer call, commits included, happens on the thread that polls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vigil.bus.base import Consumer, Record, TopicPartition
from vigil.bus.checkpoint import dead_letter_reason
from vigil.codec import decode
from vigil.errors import InvalidEvent, RetryableError, UnexpectedEvent, VigilError
from vigil.events import ActionRequest

log = logging.getLogger(__name__)
RETRY_S = 1.0  # after a failed poll or commit (the broker away)


@dataclass(frozen=True, slots=True)
class Reject:
    record: Record
    reason: str
    detail: str


@dataclass(slots=True)
class Taken:
    """What arrived since the last ``take``: requests to apply, rejects to dead-letter, and the offsets
    to commit once both are on the broker."""

    requests: list[ActionRequest] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.offsets)


class ActionInbox:
    def __init__(self, connect: Callable[[], Consumer]) -> None:
        self._connect = connect
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self._arrived = Taken()
        self._to_commit: dict[TopicPartition, int] = {}
        self.running = False

    def take(self) -> Taken:
        """Everything that arrived since the last call (polling first when no thread polls)."""
        if not self.running:
            self.pump(0.0)
        with self._lock:
            taken, self._arrived = self._arrived, Taken()
        return taken

    def delivered(self, taken: Taken) -> None:
        """The tick that applied ``taken`` is on the broker: its offsets may be committed."""
        if not taken:
            return
        with self._lock:
            for tp, offset in taken.offsets.items():
                self._to_commit[tp] = max(offset, self._to_commit.get(tp, 0))
        if not self.running:
            self._commit()

    def pump(self, timeout_s: float) -> None:
        """One poll (and the commits that are due); a broker error is logged and the consumer rebuilt."""
        try:
            consumer = self._consumer = self._consumer or self._connect()
            records = consumer.poll(timeout_s)
        except RetryableError as exc:
            log.warning("simulator: reading the actions topic failed, retrying: %s", exc)
            self._drop_consumer()
            return
        with self._lock:
            for record in records:
                self._arrived.offsets[record.tp] = record.offset + 1
                try:
                    event = decode(record.value)
                    if not isinstance(event, ActionRequest):
                        raise UnexpectedEvent(f"{type(event).__name__} on the actions topic")
                except InvalidEvent as exc:
                    self._arrived.rejects.append(Reject(record, dead_letter_reason(exc), str(exc)))
                    continue
                self._arrived.requests.append(event)
        self._commit()

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop``; for a thread of its own."""
        self.running = True
        try:
            while not stop.is_set():
                self.pump(0.5)
                if self._consumer is None:
                    stop.wait(RETRY_S)
        finally:
            self.running = False
            self.close()

    def close(self) -> None:
        self._commit()
        self._drop_consumer()

    def _commit(self) -> None:
        with self._lock:
            due, self._to_commit = self._to_commit, {}
        if not due or self._consumer is None:
            with self._lock:
                self._to_commit = {**due, **self._to_commit}
            return
        try:
            self._consumer.commit(due)
        except RetryableError as exc:
            log.warning("simulator: committing actions offsets failed, will retry: %s", exc)
            with self._lock:
                self._to_commit = {**due, **self._to_commit}

    def _drop_consumer(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                consumer.close()
            except VigilError as exc:  # closing a broken consumer must not stop the simulator
                log.debug("closing the actions consumer: %s", exc)
