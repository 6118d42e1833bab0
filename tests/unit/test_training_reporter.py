"""The training reporter on the in-memory bus: every step published in order, drops counted, retries.

The same paths run on the real broker in tests/integration/test_training_sdk.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from vigil.collectors.training import Reporter, ReporterOptions
from vigil.collectors.training.reporter import bus_from_env

from vigil.bus import Header
from vigil.bus.memory import MemoryBus, MemoryProducer
from vigil.codec import decode
from vigil.errors import ConfigError, RetryableError
from vigil.events import TrainingStep, TrainingStepBatch
from vigil.topics import Topics

TOPIC = Topics().training
QUIET = ReporterOptions(interval_s=60.0)  # the publisher does not wake on its own during a test


def steps_on(bus: MemoryBus, topic: str = TOPIC) -> list[TrainingStep]:
    """The steps published, one batch per wake-up, as single steps."""
    out = []
    for record in bus.records(topic):
        event = decode(record.value)
        assert isinstance(event, TrainingStepBatch)
        assert record.key == event.job_id.encode()
        out += event.steps()
    return out


@pytest.fixture(autouse=True)
def _launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    for name in ("VIGIL_JOB_ID", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "CUDA_VISIBLE_DEVICES", "VIGIL_CLUSTER"):
        monkeypatch.delenv(name, raising=False)


def test_every_step_is_published_in_order_with_the_processes_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    bus = MemoryBus()
    with Reporter(bus, job_id="job-1", cluster="dc1", gpu_index=2) as reporter:
        for i in range(50):
            assert reporter.report(i, 1.0 / (i + 1), tokens_per_s=1000, grad_norm=0.5, learning_rate=3e-4)
        assert reporter.flush(5)
        assert reporter.published == 50 and reporter.dropped == 0
    got = steps_on(bus)
    assert [s.step for s in got] == list(range(50))
    assert {(s.job_id, s.rank, s.gpu_index, s.cluster) for s in got} == {("job-1", 3, 2, "dc1")}
    assert got[9].loss == pytest.approx(0.1) and got[9].tokens_per_s == 1000.0
    assert got[9].grad_norm == 0.5 and got[9].learning_rate == 3e-4


def test_step_time_is_measured_between_calls_unless_given() -> None:
    bus = MemoryBus()
    with Reporter(bus, job_id="j", options=QUIET) as reporter:
        reporter.report(0, 1.0)
        time.sleep(0.05)
        reporter.report(1, 1.0)
        reporter.report(2, 1.0, step_time_s=7.5)
    got = steps_on(bus)
    assert got[1].step_time_s >= 0.05
    assert got[2].step_time_s == 7.5


def test_the_loop_helper_numbers_steps_and_derives_throughput_and_learning_rate() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    bus = MemoryBus()
    losses = []
    with Reporter(bus, job_id="j", options=QUIET) as reporter:
        for _ in range(3):
            optimizer.zero_grad()
            loss = model(torch.ones(8, 4)).pow(2).mean()
            loss.backward()
            optimizer.step()
            time.sleep(0.01)
            reporter.step(loss, batch_size=8, tokens=8 * 128, optimizer=optimizer)
            losses.append(loss.item())
    got = steps_on(bus)
    assert [s.step for s in got] == [0, 1, 2]
    assert [s.loss for s in got] == pytest.approx(losses)
    for s in got:
        assert s.learning_rate == 0.25 and s.step_time_s >= 0.01
        assert s.samples_per_s == pytest.approx(8 / s.step_time_s)
        assert s.tokens_per_s == pytest.approx(8 * 128 / s.step_time_s)


def test_a_tensor_loss_is_detached_and_its_value_published() -> None:
    torch = pytest.importorskip("torch")
    weight = torch.tensor(2.0, requires_grad=True)
    loss = weight * 3.0
    bus = MemoryBus()
    with Reporter(bus, job_id="j", options=QUIET) as reporter:
        reporter.report(0, loss, grad_norm=torch.tensor(0.25), learning_rate=torch.tensor(1e-3))
    (got,) = steps_on(bus)
    assert got.loss == 6.0 and got.grad_norm == 0.25 and got.learning_rate == pytest.approx(1e-3)


def test_a_value_that_is_not_a_number_fails_in_the_callers_thread() -> None:
    torch = pytest.importorskip("torch")
    with Reporter(MemoryBus(), job_id="j", options=QUIET) as reporter:
        with pytest.raises(TypeError, match="loss must be a number"):
            reporter.report(0, "0.5")
        with pytest.raises(ValueError, match="one-element tensor"):
            reporter.report(0, torch.ones(3))
        with pytest.raises(ValueError, match="step must not be negative"):
            reporter.report(-1, 0.5)
        with pytest.raises(TypeError):
            reporter.report(1.5, 0.5)  # type: ignore[arg-type]
        assert reporter.buffered == 0


def test_nan_loss_is_published_as_nan() -> None:
    bus = MemoryBus()
    with Reporter(bus, job_id="j", options=QUIET) as reporter:
        reporter.report(0, float("nan"))
    assert math.isnan(steps_on(bus)[0].loss)


def test_a_full_queue_drops_new_steps_counts_them_and_never_blocks() -> None:
    registry = CollectorRegistry()
    bus = MemoryBus()
    reporter = Reporter(bus, job_id="j", options=ReporterOptions(capacity=10, interval_s=60.0), registry=registry)
    accepted = [reporter.report(i, 0.5) for i in range(25)]
    assert accepted == [True] * 10 + [False] * 15
    assert reporter.dropped == 15
    assert registry.get_sample_value("vigil_training_reporter_dropped_total", {"reason": "queue_full"}) == 15
    reporter.close()
    assert [s.step for s in steps_on(bus)] == list(range(10))  # the kept ones, in order
    assert registry.get_sample_value("vigil_training_reporter_published_total") == 10


def test_report_after_close_is_dropped_and_counted() -> None:
    reporter = Reporter(MemoryBus(), job_id="j", options=QUIET)
    reporter.close()
    reporter.close()  # idempotent
    assert reporter.report(0, 1.0) is False
    assert reporter.dropped == 1


class FlakyBus(MemoryBus):
    """A memory bus whose first ``fail_connects`` producers cannot be built and whose first
    ``fail_flushes`` flushes fail after the records were appended (so a retry duplicates them)."""

    def __init__(self, fail_connects: int = 0, fail_flushes: int = 0) -> None:
        super().__init__()
        self.fail_connects, self.fail_flushes, self.connects = fail_connects, fail_flushes, 0

    def producer(self) -> MemoryProducer:
        self.connects += 1
        if self.connects <= self.fail_connects:
            raise RetryableError("broker away")
        return FlakyProducer(self)


class FlakyProducer(MemoryProducer):
    def __init__(self, bus: FlakyBus) -> None:
        super().__init__(bus)
        self.flaky = bus

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Sequence[Header] = ()) -> None:
        super().send(topic, value, key, headers)

    def flush(self, timeout_s: float | None = None) -> None:
        if self.flaky.fail_flushes > 0:
            self.flaky.fail_flushes -= 1
            raise RetryableError("a record was not delivered")


def test_a_broker_that_is_away_delays_steps_but_loses_none() -> None:
    registry = CollectorRegistry()
    bus = FlakyBus(fail_connects=3)
    options = ReporterOptions(interval_s=0.01, retry_max_s=0.05)
    with Reporter(bus, job_id="j", options=options, registry=registry) as reporter:
        for i in range(40):
            assert reporter.report(i, 0.5)
        assert reporter.flush(10)
    assert [s.step for s in steps_on(bus)] == list(range(40))
    assert registry.get_sample_value("vigil_training_reporter_publish_errors_total") == 3


def test_a_failed_flush_resends_everything_unconfirmed_at_least_once_in_order() -> None:
    bus = FlakyBus(fail_flushes=2)
    with Reporter(bus, job_id="j", options=ReporterOptions(interval_s=0.01, retry_max_s=0.05)) as reporter:
        for i in range(20):
            reporter.report(i, 0.5)
        assert reporter.flush(10)
        assert reporter.published == 20
    steps = [s.step for s in steps_on(bus)]
    assert set(steps) == set(range(20))
    assert steps[-20:] == list(range(20))  # the attempt that succeeded carried all of them, in order


def test_close_gives_up_after_its_timeout_and_counts_the_undelivered() -> None:
    registry = CollectorRegistry()
    bus = FlakyBus(fail_connects=10**6)
    reporter = Reporter(bus, job_id="j", options=ReporterOptions(interval_s=0.01, retry_max_s=0.02), registry=registry)
    for i in range(5):
        reporter.report(i, 0.5)
    started = time.monotonic()
    reporter.close(timeout_s=0.3)
    assert time.monotonic() - started < 5
    assert reporter.dropped == 5 and reporter.published == 0
    assert registry.get_sample_value("vigil_training_reporter_dropped_total", {"reason": "undelivered"}) == 5


def test_missing_job_id_or_broker_fails_at_start_naming_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="VIGIL_JOB_ID"):
        Reporter(MemoryBus())
    monkeypatch.delenv("VIGIL_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigError, match="VIGIL_KAFKA_BOOTSTRAP_SERVERS"):
        Reporter(job_id="j")
    with pytest.raises(ConfigError, match="capacity"):
        ReporterOptions(capacity=0)
    with pytest.raises(ConfigError, match="yield_every"):
        ReporterOptions(yield_every=-1)
    assert bus_from_env({"VIGIL_KAFKA_BOOTSTRAP_SERVERS": "a:9092, b:9092"}).config.bootstrap_servers == [  # type: ignore[attr-defined]
        "a:9092",
        "b:9092",
    ]


def test_the_topic_prefix_and_job_id_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TOPIC_PREFIX", "lab")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    bus = MemoryBus()
    with Reporter(bus) as reporter:
        reporter.report(0, 1.0)
    assert reporter.topic == "lab.training.v1"
    assert steps_on(bus, "lab.training.v1")[0].job_id == "4242"


def test_report_does_not_wait_for_a_busy_gpu() -> None:
    """On a CUDA machine: report() of a loss whose kernels are still running returns while the stream is
    still busy (it queued a copy, it did not synchronise), and the publisher reads the right value."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    bus = MemoryBus()
    with Reporter(bus, job_id="j", options=QUIET) as reporter:
        x = torch.ones((), device="cuda")
        torch.cuda._sleep(2_000_000_000)  # about a second of GPU time queued before the loss
        loss = x * 3.0
        reporter.report(0, loss)
        assert not torch.cuda.current_stream().query(), "report() synchronised the stream"
    assert steps_on(bus)[0].loss == 3.0


def test_a_wake_ups_steps_travel_as_one_record_of_columns() -> None:
    bus = MemoryBus()
    with Reporter(bus, job_id="job-9", options=QUIET) as reporter:
        for i in range(500):
            reporter.report(i, 2.0, step_time_s=0.5)
        assert reporter.flush(5) and reporter.published == 500
    records = bus.records(TOPIC)
    assert len(records) == 1  # one flush, one message: not 500
    batch = decode(records[0].value)
    assert isinstance(batch, TrainingStepBatch) and batch.rows == 500 and batch.step.tolist() == list(range(500))


def test_an_impossible_duration_is_sent_as_not_measured_and_keeps_its_batch() -> None:
    bus = MemoryBus()
    with Reporter(bus, job_id="job-9", options=QUIET) as reporter:
        reporter.report(0, 2.0, step_time_s=0.5, compute_time_s=-3.0)  # a clock that went backwards
        reporter.report(1, 2.0, step_time_s=1e9)
        reporter.report(2, 2.0, step_time_s=0.5, compute_time_s=0.4)
        assert reporter.flush(5)
    got = steps_on(bus)  # decodes: one bad value would have sent the whole batch to the dead letters
    assert [s.step for s in got] == [0, 1, 2]
    assert got[0].compute_time_s is None and math.isnan(got[1].step_time_s) and got[2].compute_time_s == 0.4
