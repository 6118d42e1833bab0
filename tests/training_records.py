"""What a reader of the training topic gets from one record: the SDK and the simulator publish a flush's
steps as one ``TrainingStepBatch``; older producers (and a scrape) send one ``TrainingStep`` each."""

from __future__ import annotations

from vigil.codec import decode
from vigil.events import TrainingStep, TrainingStepBatch


def step_numbers(value: bytes, job_id: str | None = None) -> list[int]:
    """The step numbers one training record carries (of ``job_id`` only, when given)."""
    event = decode(value)
    if isinstance(event, TrainingStepBatch) and job_id in (None, event.job_id):
        return [int(s) for s in event.step.tolist()]
    if isinstance(event, TrainingStep) and job_id in (None, event.job_id):
        return [event.step]
    return []
