"""The training SDK's one object: ``Reporter.report()`` once per step, publishing in the background.

The training thread's cost is what ``report()`` does: read two clocks, take the values (see
:mod:`.values` for tensors), and append one tuple to a bounded ``collections.deque``, or count a
drop when it is full. No lock, no event to set, no allocation beyond the tuple: ``deque.append``
and ``len`` are atomic under the GIL, and only the training thread appends. The publisher, a daemon
thread, wakes every ``interval_s``, turns the queued tuples into ``TrainingStep`` events, and
publishes them with one flush per wake-up, so the producer sends a wake-up's steps as one batch
(one request) instead of one request per step.

If the broker is away, the steps wait: first in the queue, then in the outbox (each bounded by
``capacity``), and the publisher retries with exponential back-off; the training loop never sees an
error. When both are full, newer steps are dropped and counted (``dropped``, and the
``vigil_training_reporter_dropped_total{reason}`` counter).
"""

from __future__ import annotations

import atexit
import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from vigil.collectors.training import identity
from vigil.collectors.training.connection import kafka_config_from_env
from vigil.collectors.training.outbox import Outbox, ReporterMetrics, yield_gil
from vigil.collectors.training.values import Held, hold, read, read_optional

from vigil.bus import Bus
from vigil.codec import encode
from vigil.config import KafkaConfig
from vigil.errors import ConfigError
from vigil.events import TrainingStep
from vigil.topics import Topics

log = logging.getLogger(__name__)

PREFIX_VAR = "VIGIL_TOPIC_PREFIX"
LINGER_S = 1.0  # longer than any sensible interval_s: the publisher's flush, not the linger, sends
_perf = time.perf_counter
_wall = time.time

# (ts, step, loss, step_time_s, tokens_per_s, samples_per_s, grad_norm, learning_rate, compute_time_s)
Item = tuple[float, int, Held, float, float | None, float | None, Held | None, Held | None, float | None]


@dataclass(frozen=True, slots=True)
class ReporterOptions:
    capacity: int = 10_000  # steps in the queue, and again in the outbox, before new ones are dropped
    interval_s: float = 0.2  # how often the publisher wakes; also the most a step waits before it is sent
    flush_timeout_s: float = 10.0  # one publish attempt's wait for the broker's acknowledgements
    close_timeout_s: float = 10.0  # what close() (and the atexit hook) waits for the last steps
    retry_max_s: float = 30.0  # the longest back-off between publish attempts while the broker is away
    yield_every: int = 16  # steps the publisher handles between GIL hand-overs (0: never, for comparison)

    def __post_init__(self) -> None:
        for name in ("capacity", "interval_s", "flush_timeout_s", "close_timeout_s", "retry_max_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"training reporter: {name} must be positive, got {getattr(self, name)!r}")
        if self.yield_every < 0:
            raise ConfigError(f"training reporter: yield_every must not be negative, got {self.yield_every!r}")


def kafka_bus(config: KafkaConfig) -> Bus:
    """The reporter's Kafka bus on ``config`` (brokers, TLS, SASL, idempotence: see :mod:`.connection`)."""
    from vigil.bus.kafka import KafkaBus

    return KafkaBus(config)


def bus_from_env(env: Mapping[str, str] | None = None) -> Bus:
    """A Kafka bus on the brokers and security settings of the ``VIGIL_KAFKA_*`` variables.

    The publisher flushes after every wake-up, and a flush sends whatever is queued at once; so a linger
    longer than the wake-up interval makes each wake-up exactly one produce request, and keeps
    kafka-python's I/O thread from waking every few milliseconds to send partial batches (each wake-up is
    Python code taking the GIL from the training thread)."""
    source = os.environ if env is None else env
    return kafka_bus(kafka_config_from_env(source, client_id="vigil-training", linger=LINGER_S))


class Reporter:
    """Publishes one ``TrainingStep`` per ``report()`` to the training topic, keyed by job id.

    ``bus`` defaults to Kafka at ``VIGIL_KAFKA_BOOTSTRAP_SERVERS``; ``job_id`` to ``VIGIL_JOB_ID``,
    ``SLURM_JOB_ID`` or ``TORCHELASTIC_RUN_ID``. Rank, world size, host and GPU are detected (see
    :mod:`.identity`) when the first step is published, so a reporter made before
    ``torch.distributed.init_process_group`` still gets the right rank. Use it as a context manager,
    or call :meth:`close`; an atexit hook flushes a reporter left open.
    """

    def __init__(
        self,
        bus: Bus | None = None,
        job_id: str | None = None,
        *,
        cluster: str | None = None,
        gpu_index: int | None = None,
        topics: Topics | None = None,
        options: ReporterOptions | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.options = options or ReporterOptions()
        # Detected now so that a bad environment fails at start; detected again at the first publish.
        self._detect_args = (job_id, cluster, gpu_index)
        self.identity = identity.detect(job_id, cluster, gpu=gpu_index)
        self._settled = identity.distributed_ready()
        bus = bus if bus is not None else bus_from_env()
        topics = topics or Topics(os.environ.get(PREFIX_VAR, "vigil"))
        self.metrics = ReporterMetrics(registry if registry is not None else CollectorRegistry())
        self.topic = topics.training
        self._outbox = Outbox(
            bus,
            self.topic,
            self.identity.job_id.encode(),
            self.options.capacity,
            self.metrics,
            self.options.yield_every,
        )
        self._queue: deque[Item] = deque()
        self._capacity = self.options.capacity
        self._full = 0  # drops counted by the training thread (queue full, or reporter closed)
        self._lost = 0  # drops counted by the publisher thread (invalid values, undelivered at close)
        self._full_counter = self.metrics.dropped.labels("queue_full")
        self._closed = False
        self._last = _perf()  # the first step's time counts from here
        self._next_step = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._deadline = 0.0
        self._logged: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="vigil-training-reporter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ------------------------------------------------------------------ training thread

    def report(
        self,
        step: int,
        loss: Any,
        step_time_s: float | None = None,
        tokens_per_s: float | None = None,
        samples_per_s: float | None = None,
        grad_norm: Any = None,
        learning_rate: Any = None,
        compute_time_s: float | None = None,
    ) -> bool:
        """Queue one step and return at once; False when it was dropped (queue full or reporter closed).

        ``step_time_s`` defaults to the time since the previous call (the first: since the reporter was
        made). ``loss``, ``grad_norm`` and ``learning_rate`` may be one-element tensors: a CUDA tensor
        is not synchronised here (see :mod:`.values`). A value that is not a number raises here.
        """
        now = _perf()
        if step_time_s is None:
            step_time_s = now - self._last
        self._last = now
        if type(step) is not int:
            step = operator.index(step)
        if step < 0:
            raise ValueError(f"report(): step must not be negative, got {step}")
        if type(loss) is not float:
            loss = hold(loss, "loss")
        if grad_norm is not None and type(grad_norm) is not float:
            grad_norm = hold(grad_norm, "grad_norm")
        if learning_rate is not None and type(learning_rate) is not float:
            learning_rate = hold(learning_rate, "learning_rate")
        if tokens_per_s is not None and type(tokens_per_s) is not float:
            tokens_per_s = float(tokens_per_s)
        if samples_per_s is not None and type(samples_per_s) is not float:
            samples_per_s = float(samples_per_s)
        if compute_time_s is not None and type(compute_time_s) is not float:
            compute_time_s = float(compute_time_s)
        self._next_step = step + 1
        if len(self._queue) >= self._capacity or self._closed:
            self._drop_on_caller()
            return False
        self._queue.append(
            (_wall(), step, loss, step_time_s, tokens_per_s, samples_per_s, grad_norm, learning_rate, compute_time_s)
        )
        return True

    def step(
        self,
        loss: Any,
        *,
        batch_size: int | None = None,
        tokens: int | None = None,
        grad_norm: Any = None,
        learning_rate: Any = None,
        optimizer: Any = None,
        step: int | None = None,
    ) -> bool:
        """The plain PyTorch loop helper: call once at the end of each step.

        Numbers the steps itself (0, 1, 2, ... unless ``step`` is given), times them between calls, and
        turns ``batch_size`` / ``tokens`` (this rank's, this step) into samples/s and tokens/s. With an
        ``optimizer``, the learning rate is read from its first parameter group.
        """
        elapsed = _perf() - self._last
        if learning_rate is None and optimizer is not None:
            learning_rate = optimizer.param_groups[0]["lr"]
        rate = 1.0 / elapsed if elapsed > 0 else 0.0
        return self.report(
            self._next_step if step is None else step,
            loss,
            step_time_s=elapsed,
            tokens_per_s=tokens * rate if tokens is not None else None,
            samples_per_s=batch_size * rate if batch_size is not None else None,
            grad_norm=grad_norm,
            learning_rate=learning_rate,
        )

    def _drop_on_caller(self) -> None:
        self._full += 1
        if self._closed:
            self.metrics.dropped.labels("closed").inc()
            self._log_once("closed", "report() after close(): steps are dropped")
        else:
            self._full_counter.inc()
            self._log_once("full", f"training reporter queue full ({self._capacity} steps): dropping new steps")

    # ------------------------------------------------------------------ state

    @property
    def dropped(self) -> int:
        """Steps given up so far, for any reason."""
        return self._full + self._lost

    @property
    def published(self) -> int:
        """Steps the broker has confirmed."""
        return self._outbox.confirmed

    @property
    def buffered(self) -> int:
        """Steps queued or waiting in the outbox."""
        return len(self._queue) + len(self._outbox.pending)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every step reported so far is published (or dropped); False on timeout."""
        deadline = _perf() + (self.options.flush_timeout_s if timeout_s is None else timeout_s)
        self._wake.set()  # once: setting it in the loop would turn a back-off into a retry storm
        while self.buffered and self._thread.is_alive():
            if _perf() >= deadline:
                return False
            time.sleep(min(0.01, self.options.interval_s))
        return not self.buffered

    def close(self, timeout_s: float | None = None) -> None:
        """Publish what is left (waiting at most ``timeout_s``), then stop the publisher. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        wait = self.options.close_timeout_s if timeout_s is None else timeout_s
        self._deadline = _perf() + wait
        self._stopping.set()
        self._wake.set()
        self._thread.join(wait + 1.0)
        if self._thread.is_alive():
            log.warning("training reporter: publisher still busy after %.1fs; %d steps unsent", wait, self.buffered)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ publisher thread

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            delay = self.options.interval_s if failures == 0 else self._backoff(failures)
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopping.is_set():
                break
            failures = 0 if self._attempt(self.options.flush_timeout_s) else failures + 1
        self._drain()

    def _backoff(self, failures: int) -> float:
        return float(min(self.options.retry_max_s, self.options.interval_s * 2 ** min(failures, 20)))

    def _attempt(self, flush_timeout_s: float) -> bool:
        """Move queued steps into the outbox and publish them; False (after reset) on failure."""
        self._take()
        try:
            self._outbox.publish(flush_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the publisher must outlive any client error; steps are kept
            self.metrics.errors.inc()
            self._outbox.reset()
            self._log_once(type(exc).__name__, f"training reporter: publish failed, will retry: {exc}")
            return False
        finally:
            self.metrics.buffered.set(self.buffered)
        return True

    def _drain(self) -> None:
        """At close: publish until empty or the deadline, then count what is left as undelivered."""
        while self.buffered:
            remaining = self._deadline - _perf()
            if remaining <= 0 or not self._attempt(max(0.1, remaining)):
                break
        self._outbox.close()
        left = self.buffered
        if left:
            self._queue.clear()
            self._outbox.pending.clear()
            self._lost += left
            self.metrics.dropped.labels("undelivered").inc(left)
            log.warning("training reporter: %d steps could not be delivered before close", left)
        self.metrics.buffered.set(0)

    def _take(self) -> None:
        queue, room, add, every = self._queue, self._outbox.room(), self._outbox.add, self.options.yield_every
        taken = 0
        while queue and room > 0:
            item = queue.popleft()
            taken += 1
            if every and taken % every == 0:
                yield_gil()
            try:
                add(encode(self._event(item)))
                room -= 1
            except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
                # A tensor that cannot be read any more (a CUDA error: often the very fault to monitor).
                self._lost += 1
                self.metrics.dropped.labels("invalid").inc()
                self._log_once("invalid", f"training reporter: a step could not be read and is dropped: {exc}")

    def _event(self, item: Item) -> TrainingStep:
        if not self._settled:
            self.identity = identity.detect(*self._detect_args[:2], gpu=self._detect_args[2])
            self._settled = True
        ident = self.identity
        ts, step, loss, step_time, tokens, samples, grad, lr, compute = item
        return TrainingStep(
            ts=ts,
            job_id=ident.job_id,
            rank=ident.rank,
            host=ident.host,
            step=step,
            loss=read(loss),
            step_time_s=step_time,
            gpu_index=ident.gpu_index,
            compute_time_s=compute,
            tokens_per_s=tokens,
            samples_per_s=samples,
            grad_norm=read_optional(grad),
            learning_rate=read_optional(lr),
            cluster=ident.cluster,
        )

    def _log_once(self, kind: str, message: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(message)
