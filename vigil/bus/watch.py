"""Is a consumer alive and keeping up? Its last poll, its lag per partition, and the health verdict.

``ConsumerWatch`` is fed by the commit protocol (``Checkpoint.poll``): every poll notes the time,
and every ``lag_every`` one offsets request measures the lag of each assigned partition, the
records between the group's committed offset and the log end, into
``vigil_consumer_lag_records{group,topic,partition}``. ``health()`` fails when

- polling has stalled: no poll for ``stalled_polls`` x the poll timeout, outside a broker outage (a
  service waiting out an outage does not poll, and restarting it would not bring the broker back);
- the lag keeps growing: it grew at each of the last ``lag_checks`` measurements and is above
  ``lag_floor`` records (the consumer is falling behind, or its commits are stuck).

How exact the lag is: the log end is the larger of what the last fetch response said (the high
watermark, exact when it was sent) and a ListOffsets answer (current). Against Kafka either is
exact up to the records produced since. Tansu 0.6 answers ListOffsets with the base offset of the
partition's last batch + 1, so there the figure can be short by the size of the last batch (minus
one) when nothing was fetched since that batch arrived; it is never above the true lag, and is
clamped at 0. A partition the group never committed has no lag series while it holds records (it
is read from its log start, which is not asked), as Kafka's own tools show "-" for it; an empty one
has lag 0.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from vigil.bus.base import Consumer, TopicPartition
from vigil.clock import Clock
from vigil.config import ConsumerHealthConfig
from vigil.errors import RetryableError
from vigil.metrics_catalog import gauge

log = logging.getLogger(__name__)


class LagTrend:
    """The total lag of the last ``checks + 1`` measurements: growing when it grew at each of them
    and ends above ``floor``. ``checks`` 0 never says growing."""

    def __init__(self, checks: int, floor: int) -> None:
        self.checks = checks
        self.floor = floor
        self._seen: deque[int] = deque(maxlen=checks + 1)

    def add(self, total: int) -> None:
        self._seen.append(total)

    def reset(self) -> None:
        self._seen.clear()

    @property
    def last(self) -> int | None:
        return self._seen[-1] if self._seen else None

    def growing(self) -> bool:
        seen = list(self._seen)
        if self.checks == 0 or len(seen) <= self.checks or seen[-1] <= self.floor:
            return False
        return all(b > a for a, b in itertools.pairwise(seen))


class ConsumerWatch:
    def __init__(
        self,
        consumer: Consumer,
        group: str,
        clock: Clock,
        registry: CollectorRegistry | None,
        config: ConsumerHealthConfig,
        poll_timeout_s: float,
    ) -> None:
        self._consumer = consumer
        self.group = group
        self._clock = clock
        self._config = config
        self.stall_after_s = config.stalled_polls * poll_timeout_s
        self._lag_gauge = gauge(registry, "vigil_consumer_lag_records")
        self._poll_gauge = gauge(registry, "vigil_consumer_last_poll_timestamp_seconds")
        self._last_poll = clock.monotonic()  # the start counts as a poll: joining the group takes a while
        self._measured_at: float | None = None
        self._group_committed: dict[TopicPartition, int | None] = {}  # asked of the broker, per assignment
        self._held: set[TopicPartition] = set()  # the assignment at the last measurement
        self.lag: dict[TopicPartition, int] = {}
        self.trend = LagTrend(config.lag_checks, config.lag_floor)

    def polled(self, committed: Mapping[TopicPartition, int]) -> None:
        """A poll returned; ``committed``: the next offsets this member committed, per partition."""
        now = self._clock.monotonic()
        self._last_poll = now
        self._poll_gauge.labels(self.group).set(self._clock.now())
        if self._measured_at is None or now - self._measured_at >= self._config.lag_every:
            self._measured_at = now
            self.measure(committed)

    def measure(self, committed: Mapping[TopicPartition, int]) -> None:
        """One lag measurement of every assigned partition (a broker that does not answer: skipped)."""
        tps = self._consumer.assignment()
        # forget what the broker said of partitions not held at the last measurement (a rebalance
        # may have let another member commit them meanwhile)
        self._group_committed = {tp: off for tp, off in self._group_committed.items() if tp in self._held}
        self._held = tps
        try:
            ends = self._consumer.log_end(tps)
            known = {tp: self._committed(tp, committed) for tp in tps}
        except RetryableError as exc:
            log.debug("consumer lag of %s not measured: %s", self.group, exc)
            return
        # never committed: unknown (it is read from the log start), unless the log is empty
        known = {tp: 0 if off is None and ends.get(tp) == 0 else off for tp, off in known.items()}
        lag = {tp: max(0, ends[tp] - off) for tp, off in known.items() if off is not None and tp in ends}
        for tp in set(self.lag) - set(lag):
            self._lag_gauge.remove(self.group, tp.topic, str(tp.partition))
        for tp, value in lag.items():
            self._lag_gauge.labels(self.group, tp.topic, str(tp.partition)).set(value)
        self.lag = lag
        self.trend.add(sum(lag.values()))

    def _committed(self, tp: TopicPartition, committed: Mapping[TopicPartition, int]) -> int | None:
        if tp in committed:
            return committed[tp]
        if tp not in self._group_committed:  # a partition this member has not committed yet
            self._group_committed[tp] = self._consumer.committed(tp)
        return self._group_committed[tp]

    def health(self, outage: bool) -> dict[str, Any]:
        """``ok`` false when polling stalled (outside an ``outage``) or the lag keeps growing."""
        since = self._clock.monotonic() - self._last_poll
        stalled = not outage and since > self.stall_after_s
        growing = self.trend.growing()
        return {
            "ok": not stalled and not growing,
            "last_poll_age_s": round(since, 3),
            "poll_stalled": stalled,
            "lag": self.trend.last,
            "lag_growing": growing,
        }
