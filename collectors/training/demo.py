"""A small real PyTorch training job that reports every step through the SDK.

``python -m vigil.collectors.training.demo --steps 200`` trains an MLP on random regression data.
Under torchrun (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` set) each process is one
data-parallel rank (DistributedDataParallel over gloo, CPU only), and each rank reports its own
steps. The broker is ``VIGIL_KAFKA_BOOTSTRAP_SERVERS`` and the job ``VIGIL_JOB_ID`` (or the
launcher's). It is the README's example, the integration test's worker and the benchmark's workload.
Prints one JSON line: rank, steps, reported, dropped, mean step time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from vigil.collectors.training.reporter import Reporter

from vigil.errors import ConfigError


class StepReporter(Protocol):
    """What the loop needs of a reporter (``Reporter``, or a benchmark's timing wrapper around one)."""

    def step(self, loss: Any, *, batch_size: int | None, grad_norm: Any, optimizer: Any) -> bool: ...


@dataclass
class Job:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: torch.Tensor
    targets: torch.Tensor
    batch_size: int


def make_job(seed: int = 0, width: int = 256, batch_size: int = 64, batches: int = 16) -> Job:
    """An MLP and a fixed set of random batches (the data is not the point; the loop is)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model: nn.Module = nn.Sequential(
        nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)
    )
    if dist.is_available() and dist.is_initialized():
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randn(batches, batch_size, 32, generator=generator)
    targets = inputs[..., :4].sum(-1, keepdim=True) + 0.1 * torch.randn(batches, batch_size, 1, generator=generator)
    return Job(model, optimizer, inputs, targets, batch_size)


def train(job: Job, steps: int, reporter: StepReporter | None) -> list[float]:
    """``steps`` optimizer steps; with a reporter, ``reporter.step()`` at the end of each. Step times (s)."""
    loss_fn = nn.MSELoss()
    times: list[float] = []
    for i in range(steps):
        started = time.perf_counter()
        batch = i % job.inputs.shape[0]
        job.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(job.model(job.inputs[batch]), job.targets[batch])
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(job.model.parameters(), 1.0)
        job.optimizer.step()
        if reporter is not None:
            reporter.step(loss, batch_size=job.batch_size, grad_norm=grad_norm, optimizer=job.optimizer)
        times.append(time.perf_counter() - started)
    return times


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--no-report", action="store_true", help="train without the reporter (baseline)")
    args = parser.parse_args(argv)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    job = make_job()
    try:
        reporter = None if args.no_report else Reporter()  # made last: the first step's time counts from here
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        times = train(job, args.steps, reporter)
    finally:
        if reporter is not None:
            reporter.close()
    summary = {
        "rank": dist.get_rank() if distributed else 0,
        "steps": args.steps,
        "published": reporter.published if reporter else 0,
        "dropped": reporter.dropped if reporter else 0,
        "mean_step_s": sum(times) / len(times) if times else 0.0,
    }
    if distributed:
        dist.destroy_process_group()
    print(json.dumps(summary), flush=True)  # noqa: T201 - the demo's output is its summary


if __name__ == "__main__":
    main()
