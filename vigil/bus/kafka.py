"""The bus on a real Kafka-protocol broker (Apache Kafka, Redpanda, MSK, or embedded Tansu).

Producers batch and compress (lz4 by default) because the Python client, not the broker, is the
bottleneck: many samples per message, many messages per request. Consumers never auto-commit;
the service decides when its output is safe and then commits (see ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTP
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from vigil.bus.base import DeliveryCallback, Header, RebalanceCallback, Record, TopicPartition
from vigil.bus.connection import client_settings, diagnose
from vigil.config import KafkaConfig
from vigil.errors import PermanentError, RetryableError, VigilError

log = logging.getLogger(__name__)
ADMIN_BOOTSTRAP_S = 10.0


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class KafkaBus:
    def __init__(self, config: KafkaConfig) -> None:
        if not config.bootstrap_servers:
            raise ValueError("KafkaBus needs kafka.bootstrap_servers (the CLI starts the embedded broker)")
        self.config = config

    def producer(self) -> KafkaBusProducer:
        return KafkaBusProducer(self.config)

    def consumer(
        self,
        topics: Iterable[str],
        group: str,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> KafkaBusConsumer:
        return KafkaBusConsumer(self.config, list(topics), group, on_assign, on_revoke)

    def admin(self) -> KafkaAdminClient:
        # Used at start, after ``diagnose`` found a broker: what still fails (a refused login) should
        # be reported in seconds, not after kafka-python's 30 s of retries.
        timeout = _ms(min(self.config.request_timeout, ADMIN_BOOTSTRAP_S))
        try:
            return KafkaAdminClient(
                **client_settings(self.config),
                client_id=f"{self.config.client_id}-admin",
                request_timeout_ms=_ms(self.config.request_timeout),
                bootstrap_timeout_ms=timeout,
            )
        except KafkaError as exc:
            raise RetryableError(unreachable(self.config, exc)) from exc

    def create_topics(self, partitions: dict[str, int]) -> None:
        """Make sure every topic exists: create what is missing (``replication_factor`` replicas) or,
        with ``kafka.create_topics: false``, raise ``MissingTopics`` naming each one that is not there."""
        admin = self.admin()
        try:
            existing = set(admin.list_topics())
            missing = sorted(name for name in partitions if name not in existing)
            if missing and not self.config.create_topics:
                raise MissingTopics(
                    f"kafka.create_topics is false and {len(missing)} topic(s) do not exist on "
                    f"{','.join(self.config.bootstrap_servers)}: {', '.join(missing)} (create them, "
                    "or set kafka.create_topics: true)"
                )
            replicas = self.config.replication_factor
            new = [NewTopic(name, partitions[name], replicas) for name in missing]
            if new:
                try:
                    admin.create_topics(new)
                except TopicAlreadyExistsError:
                    log.debug("topics created concurrently by another client")
                except KafkaError as exc:  # e.g. more replicas than brokers, or no right to create topics
                    raise VigilError(
                        f"kafka.replication_factor/create_topics: creating {len(new)} topic(s) with "
                        f"{replicas} replica(s) failed: {exc}"
                    ) from exc
        finally:
            admin.close()

    def close(self) -> None:
        pass


class MissingTopics(VigilError):
    """``kafka.create_topics`` is false and topics Vigil needs do not exist."""


def unreachable(config: KafkaConfig, exc: BaseException) -> str:
    """One line for a client that could not bootstrap: what the brokers answered, not the library's error."""
    problem = diagnose(config, timeout_s=2.0)
    if problem is not None:
        return problem.message
    # A broker answers, so the library failed after the transport: authentication, most often.
    hint = f" (kafka.sasl: {config.sasl.mechanism} as {config.sasl.username!r}?)" if config.sasl else ""
    return f"kafka.bootstrap_servers: a broker answers but the client could not start: {exc}{hint}"


# Errors about the record itself: sending it again can never work. Anything else (authorization,
# unknown topic, a closed connection) may be fixed by an operator or by time, so it is retryable.
_RECORD_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError, CorruptRecordError, InvalidRecordError)


def _as_vigil_error(exc: BaseException) -> RetryableError | PermanentError:
    if isinstance(exc, _RECORD_ERRORS):
        return PermanentError(f"the broker rejected the record: {exc}")
    return RetryableError(f"not delivered (yet): {exc}")


class KafkaBusProducer:
    """``overrides``: extra KafkaProducer tuning for one caller (the node agent tunes reconnects); the
    connection itself (servers, TLS, SASL) is always ``client_settings``."""

    def __init__(self, config: KafkaConfig, overrides: Mapping[str, Any] | None = None) -> None:
        compression = None if config.compression == "none" else config.compression
        tuning: dict[str, Any] = dict(
            client_id=config.client_id,
            compression_type=compression,
            linger_ms=_ms(config.linger),
            batch_size=config.batch_bytes,
            max_request_size=max(config.batch_bytes, 1_048_576) * 4,
            acks="all",
            retries=2**31 - 1,
            # kafka-python 3 turns idempotence on unless told otherwise; here it is the config's choice.
            # Without it, one request in flight keeps a retried batch from being overtaken (order holds).
            enable_idempotence=config.idempotence,
            max_in_flight_requests_per_connection=5 if config.idempotence else 1,
            request_timeout_ms=_ms(config.request_timeout),
            # send() blocks at most this long when the buffer is full, then raises: we surface it as
            # RetryableError so the caller can buffer or slow down instead of dying.
            max_block_ms=_ms(config.request_timeout),
        )
        tuning.update(overrides or {})
        try:
            self._producer = KafkaProducer(**client_settings(config), **tuning)
        except KafkaError as exc:  # no broker reachable to bootstrap from
            raise RetryableError(unreachable(config, exc)) from exc
        self._error: BaseException | None = None

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Sequence[Header] = ()) -> None:
        try:
            future = self._producer.send(topic, value=value, key=key, headers=list(headers) or None)
        except KafkaTimeoutError as exc:
            raise RetryableError(f"producer buffer full or broker unreachable: {exc}") from exc
        except KafkaError as exc:  # e.g. a producer left unusable by an earlier fatal error
            raise _as_vigil_error(exc) from exc
        future.add_errback(self._remember)

    def send_acked(self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback) -> None:
        try:
            future = self._producer.send(topic, value=value, key=key)
        except KafkaError as exc:
            raise _as_vigil_error(exc) from exc
        future.add_callback(lambda _metadata: on_delivery(None))
        future.add_errback(lambda exc: on_delivery(_as_vigil_error(exc)))

    def _remember(self, exc: BaseException) -> None:
        self._error = exc

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise RetryableError(f"flush failed: {exc}") from exc
        if self._error is not None:
            error, self._error = self._error, None
            raise RetryableError(f"a record was not delivered: {error}")

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.close(timeout=timeout_s)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards rebalance callbacks and tracks whether a join is in flight (from revoke until assign)."""

    def __init__(self, on_assign: RebalanceCallback | None, on_revoke: RebalanceCallback | None) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self.rebalancing = True  # a new member has not joined yet

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.rebalancing = True
        if self._on_revoke and revoked:
            self._on_revoke({TopicPartition(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.rebalancing = False
        if self._on_assign and assigned:
            self._on_assign({TopicPartition(tp.topic, tp.partition) for tp in assigned})


class KafkaBusConsumer:
    def __init__(
        self,
        config: KafkaConfig,
        topics: list[str],
        group: str,
        on_assign: RebalanceCallback | None,
        on_revoke: RebalanceCallback | None,
    ) -> None:
        try:
            self._consumer = self._connect(config, group)
        except KafkaError as exc:  # no broker reachable to bootstrap from
            raise RetryableError(unreachable(config, exc)) from exc
        self._listener = _Listener(on_assign, on_revoke)
        self._consumer.subscribe(topics, listener=self._listener)
        self._rebalance_wait_s = 2 * config.session_timeout
        # Calls that wait on the group coordinator block forever by default while the broker is away.
        self._timeout_ms = _ms(config.request_timeout)
        self._alive_within_s = 3 * config.heartbeat_interval

    @staticmethod
    def _connect(config: KafkaConfig, group: str) -> KafkaConsumer:
        return KafkaConsumer(
            **client_settings(config),
            client_id=config.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=_ms(config.session_timeout),
            heartbeat_interval_ms=_ms(config.heartbeat_interval),
            max_poll_records=config.max_poll_records,
            max_partition_fetch_bytes=config.max_partition_fetch_bytes,
            request_timeout_ms=max(_ms(config.request_timeout), _ms(config.session_timeout) + 5000),
        )

    def poll(self, timeout_s: float, max_records: int = 500) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=_ms(timeout_s), max_records=max_records)
            # kafka-python 3.0.12 throws away a JoinGroup/SyncGroup result that arrives between two polls
            # and joins again, which restarts the rebalance for every member. So while a join is in flight
            # we stay inside poll (bounded) until the assignment arrives, never returning in the middle.
            deadline = time.monotonic() + self._rebalance_wait_s
            while self._listener.rebalancing and not batches and time.monotonic() < deadline:
                batches = self._consumer.poll(timeout_ms=100, max_records=max_records)
        except KafkaError as exc:  # a rebalance callback failed, or the group state was lost with the broker
            raise RetryableError(f"poll failed: {exc}") from exc
        out: list[Record] = []
        for records in batches.values():
            out.extend(
                Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp, tuple(r.headers or ()))
                for r in records
            )
        return out

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        try:
            if offsets is None:
                self._consumer.commit()
            else:
                self._consumer.commit(
                    {KafkaTP(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()},
                    timeout_ms=self._timeout_ms,
                )
        except KafkaError as exc:
            raise RetryableError(f"offset commit failed: {exc}") from exc

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def connected(self) -> bool:
        # kafka-python has no public call for this; the last heartbeat answered is the freshest sign of
        # life (one a second, on its own thread), and reading it has no side effect.
        last = self._consumer._coordinator.heartbeat.last_receive
        return bool(time.monotonic() - last < self._alive_within_s)

    def committed(self, tp: TopicPartition) -> int | None:
        try:
            offset = self._consumer.committed(KafkaTP(tp.topic, tp.partition), timeout_ms=self._timeout_ms)
        except KafkaError as exc:
            raise RetryableError(f"committed offset of {tp.topic}-{tp.partition}: {exc}") from exc
        return None if offset is None or offset < 0 else int(offset)

    def rewind(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Seek each partition back to the group's committed offset (its beginning when none)."""
        positions: dict[TopicPartition, int | None] = {}
        for tp in sorted(tps):
            offset = self.committed(tp)
            ktp = KafkaTP(tp.topic, tp.partition)
            try:
                if offset is None:
                    self._consumer.seek_to_beginning(ktp)
                else:
                    self._consumer.seek(ktp, offset)
            except (KafkaError, ValueError) as exc:  # ValueError: no longer assigned (a rebalance ran)
                raise RetryableError(f"rewinding {tp.topic}-{tp.partition}: {exc}") from exc
            positions[tp] = offset
        return positions

    def log_end(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The larger of the last fetch's high watermark and a ListOffsets answer: Tansu answers the
        latter with its last batch's base offset + 1 (short by that batch's size - 1), while the high
        watermark is exact but only as fresh as the last fetch (``vigil.bus.watch``)."""
        ktps = [KafkaTP(tp.topic, tp.partition) for tp in tps]
        if not ktps:
            return {}
        try:
            listed = self._consumer.end_offsets(ktps, timeout_ms=self._timeout_ms)
        except KafkaError as exc:
            raise RetryableError(f"end offsets: {exc}") from exc
        out: dict[TopicPartition, int] = {}
        for ktp in ktps:
            fetched = self._consumer.highwater(ktp)
            out[TopicPartition(ktp.topic, ktp.partition)] = max(int(listed.get(ktp) or 0), int(fetched or 0))
        return out

    def position(self, tp: TopicPartition) -> int:
        return int(self._consumer.position(KafkaTP(tp.topic, tp.partition)))

    def close(self) -> None:
        self._consumer.close(autocommit=False)
