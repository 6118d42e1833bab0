"""Scrape mode against a real Prometheus endpoint: prometheus_client's own HTTP server on 127.0.0.1."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from vigil.collectors.base import CollectorContext, Problem
from vigil.collectors.registry import create_collector
from vigil.collectors.training.scrape import ScrapeOptions, TrainingScrape

from vigil.broker import free_port
from vigil.errors import ConfigError
from vigil.events import TrainingStep, TrainingStepBatch

pytestmark = pytest.mark.integration

CONTEXT = CollectorContext(host="gpu-node-3", cluster="dc1")
MAPPING = {
    "trainer_global_step": "step",
    "trainer_loss": "loss",
    "trainer_tokens_total": "tokens_per_s",
    "trainer_learning_rate": "learning_rate",
}


@dataclass
class Job:
    """A training job's metrics as it would expose them: per-rank gauges and a token counter."""

    url: str
    step: Gauge
    loss: Gauge
    tokens: Counter
    lr: Gauge

    def advance(self, rank: int, steps: int, loss: float, tokens: int) -> None:
        self.step.labels(str(rank), str(rank + 4)).inc(steps)
        self.loss.labels(str(rank), str(rank + 4)).set(loss)
        self.tokens.labels(str(rank), str(rank + 4)).inc(tokens)


@pytest.fixture
def job() -> Iterator[Job]:
    registry = CollectorRegistry()
    labels = ["rank", "gpu"]
    step = Gauge("trainer_global_step", "optimizer steps", labels, registry=registry)
    loss = Gauge("trainer_loss", "training loss", labels, registry=registry)
    tokens = Counter("trainer_tokens", "tokens seen", labels, registry=registry)
    lr = Gauge("trainer_learning_rate", "lr", registry=registry)
    lr.set(3e-4)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield Job(f"http://127.0.0.1:{port}/metrics", step, loss, tokens, lr)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def stepped(items: list[object]) -> list[TrainingStep]:
    """A scrape's one TrainingStepBatch (the ranks that advanced) as single steps."""
    (batch,) = items
    assert isinstance(batch, TrainingStepBatch) and batch.job_id == "llm-7"
    return batch.steps()


def scraper(url: str, clock: Clock, **extra: object) -> TrainingScrape:
    options = ScrapeOptions.model_validate(
        {"url": url, "job_id": "llm-7", "mapping": MAPPING, "gpu_label": "gpu", **extra}
    )
    return TrainingScrape(options, CONTEXT, clock=clock)


def test_a_step_is_emitted_per_rank_when_its_counter_advances(job: Job) -> None:
    clock = Clock()
    collector = scraper(job.url, clock)
    for rank in (0, 1):
        job.advance(rank, steps=100, loss=2.5, tokens=1000)
    assert list(collector.collect()) == []  # the first scrape is the baseline
    clock.now += 10
    job.advance(0, steps=5, loss=2.0, tokens=5000)
    job.advance(1, steps=4, loss=2.1, tokens=4000)
    first = stepped(list(collector.collect()))  # both ranks in one batch
    by_rank = {e.rank: e for e in first}
    assert by_rank[0].step == 105 and by_rank[1].step == 104
    assert by_rank[0].step_time_s == pytest.approx(2.0) and by_rank[1].step_time_s == pytest.approx(2.5)
    assert by_rank[0].tokens_per_s == pytest.approx(500.0) and by_rank[1].tokens_per_s == pytest.approx(400.0)
    assert by_rank[0].loss == 2.0 and by_rank[0].learning_rate == 3e-4
    assert (by_rank[1].job_id, by_rank[1].host, by_rank[1].cluster, by_rank[1].gpu_index) == (
        "llm-7",
        "gpu-node-3",
        "dc1",
        5,
    )
    assert by_rank[0].ts == clock.now
    clock.now += 10
    assert list(collector.collect()) == []  # no progress: silence, which is what a hang looks like
    clock.now += 10
    job.advance(0, steps=10, loss=float("nan"), tokens=2000)
    (nan_step,) = stepped(list(collector.collect()))
    assert math.isnan(nan_step.loss)
    assert nan_step.step_time_s == pytest.approx(2.0)  # 10 steps over the 20 s since the last advance
    collector.close()


def test_a_step_counter_going_back_resets_the_baseline(job: Job) -> None:
    clock = Clock()
    collector = scraper(job.url, clock)
    job.advance(0, steps=50, loss=1.0, tokens=0)
    list(collector.collect())
    job.step.labels("0", "4").set(10)  # restarted from an earlier checkpoint
    clock.now += 5
    assert list(collector.collect()) == []
    job.advance(0, steps=2, loss=1.0, tokens=0)
    clock.now += 5
    (event,) = stepped(list(collector.collect()))
    assert event.step == 12 and event.step_time_s == pytest.approx(2.5)
    collector.close()


def test_samples_can_be_selected_by_label_and_a_fixed_rank(job: Job) -> None:
    clock = Clock()
    collector = scraper(job.url, clock, labels={"rank": "1"}, rank_label="unused", rank=7)
    job.advance(0, steps=1, loss=1.0, tokens=0)
    job.advance(1, steps=1, loss=1.0, tokens=0)
    list(collector.collect())
    job.advance(0, steps=1, loss=1.0, tokens=0)
    job.advance(1, steps=1, loss=1.5, tokens=0)
    clock.now += 1
    (event,) = stepped(list(collector.collect()))
    assert (event.rank, event.loss) == (7, 1.5)
    collector.close()


class Page:
    """A plain HTTP server whose status and body the test sets: broken endpoints and hand-written pages."""

    def __init__(self) -> None:
        self.status, self.body = 200, b""
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(page.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(page.body)))
                self.end_headers()
                self.wfile.write(page.body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def page() -> Iterator[Page]:
    served = Page()
    yield served
    served.close()


def test_an_endpoint_that_fails_yields_a_problem_not_an_exception(page: Page) -> None:
    collector = scraper(page.url, Clock())
    page.status = 503
    (problem,) = collector.collect()
    assert isinstance(problem, Problem) and problem.error == "http" and "503" in problem.detail
    collector.close()
    dead = scraper(f"http://127.0.0.1:{free_port()}/metrics", Clock(), timeout=1)
    (problem,) = dead.collect()
    assert isinstance(problem, Problem) and problem.error == "http"
    dead.close()


def test_unmapped_or_malformed_pages_are_problems(page: Page) -> None:
    collector = scraper(page.url, Clock())
    page.body = b"other_metric 1\n"
    (problem,) = collector.collect()
    assert isinstance(problem, Problem) and problem.error == "missing_metric"
    page.body = b'trainer_global_step{rank="a"} 1\ntrainer_loss{rank="a"} 1\n'
    (problem,) = collector.collect()
    assert isinstance(problem, Problem) and problem.error == "parse" and "rank='a'" in problem.detail
    page.body = b"trainer_global_step{rank= 1\n"
    (problem,) = collector.collect()
    assert isinstance(problem, Problem) and problem.error == "parse"
    page.body = b'trainer_global_step{rank="0"} 1\n'
    (problem,) = collector.collect()
    assert isinstance(problem, Problem) and problem.error == "missing_metric" and "loss" in problem.detail
    collector.close()


def test_the_registry_builds_it_and_bad_options_fail_naming_the_key(job: Job) -> None:
    collector = create_collector("training_scrape", {"url": job.url, "job_id": "j", "mapping": MAPPING}, CONTEXT)
    assert collector.name == "training_scrape"
    prefix = "agent.collectors.training_scrape"
    with pytest.raises(ConfigError, match=f"{prefix}.mapping: .*needs a metric for 'step'"):
        create_collector("training_scrape", {"url": job.url, "job_id": "j", "mapping": {"x": "loss"}}, CONTEXT)
    with pytest.raises(ConfigError, match=f"{prefix}.mapping: .*more than one metric for \\['loss'\\]"):
        doubled = {**MAPPING, "other_loss": "loss"}
        create_collector("training_scrape", {"url": job.url, "job_id": "j", "mapping": doubled}, CONTEXT)
    with pytest.raises(ConfigError, match=f"{prefix}.mapping"):
        create_collector("training_scrape", {"url": job.url, "job_id": "j", "mapping": {"x": "speed"}}, CONTEXT)
    with pytest.raises(ConfigError, match=f"{prefix}.url"):
        create_collector("training_scrape", {"url": "ftp://x", "job_id": "j", "mapping": MAPPING}, CONTEXT)
    with pytest.raises(ConfigError, match=f"{prefix}.tiemout"):
        create_collector("training_scrape", {"url": job.url, "job_id": "j", "mapping": MAPPING, "tiemout": 1}, CONTEXT)
