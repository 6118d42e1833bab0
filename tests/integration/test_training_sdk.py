"""Acceptance: a real PyTorch training job reports through the SDK to the real broker.

Two data-parallel ranks (torch.distributed over gloo, two processes, as torchrun starts them) train
an MLP for 200 steps and report every step; a consumer on the training topic must receive every
step of every rank exactly once, in order per rank, with the rank the process group gave it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vigil.collectors.training import Reporter, ReporterOptions

from vigil.broker import EmbeddedBroker, free_port
from vigil.bus import Record
from vigil.bus.kafka import KafkaBus, KafkaBusConsumer
from vigil.cli.app import build_app
from vigil.codec import decode
from vigil.config import KafkaConfig
from vigil.events import TrainingStep, TrainingStepBatch
from vigil.topics import Topics

pytestmark = pytest.mark.integration

STEPS = 200
RANKS = 2


def drain(consumer: KafkaBusConsumer, want: int, timeout_s: float = 40.0) -> list[TrainingStep]:
    """Until ``want`` steps arrived (in step batches: one record per publisher wake-up), as single steps
    in offset order."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while steps_in(got) < want and time.monotonic() < deadline:
        got += consumer.poll(0.5)
    got += consumer.poll(0.5)  # anything beyond ``want`` would be a duplicate: collect it too
    out: list[TrainingStep] = []
    for record in sorted(got, key=lambda r: r.offset):
        event = decode(record.value)
        assert isinstance(event, TrainingStepBatch)
        out += event.steps()
    assert len({r.partition for r in got}) <= 1  # keyed by job: one partition keeps each rank's order
    return out


def steps_in(records: list[Record]) -> int:
    return sum(batch.rows for r in records if isinstance(batch := decode(r.value), TrainingStepBatch))


def test_every_step_of_every_rank_arrives_once_and_in_order(kafka_bus: KafkaBus, unique: str) -> None:
    pytest.importorskip("torch")
    prefix = f"train-{unique}"
    topics = Topics(prefix=prefix)
    kafka_bus.create_topics({topics.training: 4})
    bootstrap = kafka_bus.config.bootstrap_servers[0]
    master_port = free_port()
    workers = []
    for rank in range(RANKS):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(RANKS),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(master_port),
            VIGIL_JOB_ID=f"job-{unique}",
            VIGIL_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            VIGIL_TOPIC_PREFIX=prefix,
            OMP_NUM_THREADS="1",
        )
        argv = [sys.executable, "-m", "vigil.collectors.training.demo", "--steps", str(STEPS)]
        workers.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    summaries = []
    for worker in workers:
        out, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err[-3000:]
        summaries.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(s["rank"] for s in summaries) == list(range(RANKS))
    assert all(s["published"] == STEPS and s["dropped"] == 0 for s in summaries)

    consumer = kafka_bus.consumer([topics.training], f"g-{unique}")
    received = drain(consumer, RANKS * STEPS)
    consumer.close()
    by_rank: dict[int, list[TrainingStep]] = defaultdict(list)
    for event in received:
        by_rank[event.rank].append(event)
    assert sorted(by_rank) == list(range(RANKS))
    for steps in by_rank.values():
        assert [s.step for s in steps] == list(range(STEPS))  # all, once, in order
        assert {s.job_id for s in steps} == {f"job-{unique}"}
        assert all(s.loss > 0 and s.grad_norm is not None and s.learning_rate == 1e-3 for s in steps)
        assert all(s.samples_per_s and s.samples_per_s > 0 for s in steps)
    # The loss comes from real training: it falls.
    first, last = by_rank[0][:20], by_rank[0][-20:]
    assert sum(s.loss for s in last) < sum(s.loss for s in first)


def test_a_broker_that_starts_late_receives_every_step(unique: str) -> None:
    """The training loop reports while nothing listens; the steps wait and arrive once the broker is up."""
    port = free_port()
    config = KafkaConfig(bootstrap_servers=[f"127.0.0.1:{port}"], linger=0.001)
    topics = Topics(prefix=f"late-{unique}")
    options = ReporterOptions(interval_s=0.05, retry_max_s=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        reporter = Reporter(KafkaBus(config), job_id=f"late-{unique}", topics=topics, options=options)
        accepted = [reporter.report(i, 1.0 / (i + 1)) for i in range(30)]
        assert accepted == [True] * 30 and reporter.dropped == 0
        time.sleep(1.0)  # the publisher is failing to connect meanwhile
        assert reporter.published == 0
        with EmbeddedBroker(Path(tmp), ephemeral=True, port=port):
            bus = KafkaBus(config)
            bus.create_topics({topics.training: 1})
            assert reporter.flush(60), f"still buffered: {reporter.buffered}"
            reporter.close()
            consumer = bus.consumer([topics.training], f"g-{unique}")
            steps = drain(consumer, 30)
            consumer.close()
    assert [s.step for s in steps] == list(range(30))


def test_the_command_prints_one_json_document_with_machine_and_figures() -> None:
    out = CliRunner().invoke(build_app(), ["bench", "reporter", "--json", "--calls", "500", "--torch-steps", "0"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["machine"] and result["workload"]
    assert {r["loss"] for r in result["kafka_embedded"]} >= {"float"}
    assert all(r["all_published"] for r in result["memory_bus"] + result["kafka_embedded"])
