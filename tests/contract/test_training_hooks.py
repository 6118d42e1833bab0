"""Contract tests: the Hugging Face and Lightning hooks driven the way their frameworks call callbacks.

Neither framework is installed (each is gigabytes with its dependencies), so the trainers here mirror
their published contracts, looked up in the sources and docs:

- transformers ``CallbackHandler.call_event``: ``getattr(callback, event)(args, state, control,
  model=..., processing_class=..., optimizer=..., lr_scheduler=..., train_dataloader=...,
  eval_dataloader=..., **kwargs)``, in the documented order on_train_begin, (on_epoch_begin,
  (on_step_begin, on_substep_end..., on_pre_optimizer_step, on_optimizer_step, on_step_end, on_log?,
  on_evaluate?)..., on_epoch_end)..., on_train_end; ``state.global_step`` is incremented before
  on_step_end; the training ``logs`` hold ``loss`` (mean since the last log), ``grad_norm``,
  ``learning_rate`` and ``epoch``; evaluation logs hold ``eval_*``; the end of training logs a
  ``train_loss`` summary. ``TrainerState``/``TrainerControl`` carry the published fields.
- Lightning ``_call_callback_hooks``: ``fn = getattr(callback, hook); fn(trainer, pl_module, *args)``;
  ``on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)`` after every batch, where
  ``outputs["loss"]`` is the training_step loss divided by ``accumulate_grad_batches`` and
  ``trainer.global_step`` counts optimizer steps (already incremented when the batch that stepped ends).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from vigil.collectors.training import Reporter, ReporterOptions
from vigil.collectors.training.huggingface import VigilCallback
from vigil.collectors.training.lightning_callback import VigilLightningCallback

from vigil.bus.memory import MemoryBus
from vigil.codec import decode
from vigil.events import TrainingStep, TrainingStepBatch
from vigil.topics import Topics

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def published(bus: MemoryBus) -> list[TrainingStep]:
    """The steps published (in step batches, one per publisher wake-up), as single steps."""
    events = [decode(r.value) for r in bus.records(Topics().training)]
    assert all(isinstance(e, TrainingStepBatch) for e in events)
    return [s for e in events if isinstance(e, TrainingStepBatch) for s in e.steps()]


# ----------------------------------------------------------------------------- Hugging Face


@dataclass
class TrainingArguments:  # the fields of transformers.TrainingArguments the callback reads
    logging_steps: float = 500
    logging_strategy: str = "steps"
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    world_size: int = 1


@dataclass
class TrainerState:  # transformers.TrainerState's published fields
    epoch: float = 0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, Any] | None = None
    stateful_callbacks: list[Any] | None = None


@dataclass
class TrainerControl:
    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class CallbackHandler:
    """transformers' CallbackHandler.call_event, verbatim in behaviour."""

    def __init__(self, callbacks: list[Any]) -> None:
        self.callbacks = callbacks

    def call_event(self, event: str, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        for callback in self.callbacks:
            result = getattr(callback, event)(
                args,
                state,
                control,
                model=None,
                processing_class=None,
                optimizer=None,
                lr_scheduler=None,
                train_dataloader=None,
                eval_dataloader=None,
                **kwargs,
            )
            if result is not None:
                control = result
        return control


def run_hf_trainer(
    callback: Any, args: TrainingArguments, steps: int, tokens_per_step: int = 0
) -> list[dict[str, Any]]:
    """A Trainer loop calling events in the documented order; returns the training logs it emitted."""
    handler, state, control = CallbackHandler([callback]), TrainerState(max_steps=steps), TrainerControl()
    logs_sent: list[dict[str, Any]] = []
    handler.call_event("on_init_end", args, state, control)
    handler.call_event("on_train_begin", args, state, control)
    handler.call_event("on_epoch_begin", args, state, control)
    window: list[float] = []
    for i in range(steps):
        handler.call_event("on_step_begin", args, state, control)
        for _ in range(args.gradient_accumulation_steps - 1):
            handler.call_event("on_substep_end", args, state, control)
        handler.call_event("on_pre_optimizer_step", args, state, control)
        handler.call_event("on_optimizer_step", args, state, control)
        window.append(2.0 - i * 0.01)
        state.global_step += 1
        state.epoch = state.global_step / steps
        state.num_input_tokens_seen += tokens_per_step * args.world_size
        handler.call_event("on_step_end", args, state, control)
        if state.global_step % int(args.logging_steps) == 0:
            logs = {"loss": sum(window) / len(window), "grad_norm": 0.5 + i, "learning_rate": 1e-4 * (i + 1)}
            logs["epoch"] = state.epoch
            logs_sent.append(dict(logs))
            window = []
            handler.call_event("on_log", args, state, control, logs=logs)
        if state.global_step == steps // 2:
            metrics = {"eval_loss": 9.0, "epoch": state.epoch}
            handler.call_event("on_evaluate", args, state, control, metrics=metrics)
            handler.call_event("on_log", args, state, control, logs=dict(metrics))
    handler.call_event("on_epoch_end", args, state, control)
    handler.call_event("on_log", args, state, control, logs={"train_runtime": 1.0, "train_loss": 1.5, "epoch": 1.0})
    handler.call_event("on_train_end", args, state, control)
    return logs_sent


def test_hf_callback_reports_each_training_log_as_a_step() -> None:
    bus = MemoryBus()
    reporter = Reporter(bus, job_id="hf", options=ReporterOptions(interval_s=60.0))
    args = TrainingArguments(logging_steps=1, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    logs = run_hf_trainer(VigilCallback(reporter), args, steps=12, tokens_per_step=512)
    reporter.close()
    got = published(bus)
    assert [s.step for s in got] == list(range(1, 13))  # eval and end-of-training logs are not steps
    for step, log in zip(got, logs, strict=True):
        assert step.loss == pytest.approx(log["loss"])
        assert step.grad_norm == log["grad_norm"] and step.learning_rate == log["learning_rate"]
        assert step.step_time_s > 0
        assert step.samples_per_s == pytest.approx(4 * 2 / step.step_time_s)
        assert step.tokens_per_s == pytest.approx(512 / step.step_time_s)


def test_hf_callback_with_sparse_logs_reports_the_mean_step_time_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    reporter = Reporter(bus, job_id="hf", options=ReporterOptions(interval_s=60.0))
    with caplog.at_level(logging.WARNING):
        run_hf_trainer(
            VigilCallback(reporter), TrainingArguments(logging_steps=5, world_size=4), steps=20, tokens_per_step=100
        )
    reporter.close()
    assert "logging_steps=5" in caplog.text
    got = published(bus)
    assert [s.step for s in got] == [5, 10, 15, 20]
    for s in got:  # 5 steps per log, 100 tokens per rank per step: tokens/s = 500 / (5 x step time)
        assert s.tokens_per_s == pytest.approx(100 / s.step_time_s)


def test_hf_callback_makes_and_closes_its_own_reporter(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = MemoryBus()
    monkeypatch.setenv("VIGIL_JOB_ID", "hf-own")
    callback = VigilCallback(bus=bus)
    run_hf_trainer(callback, TrainingArguments(logging_steps=2), steps=6)
    assert callback.reporter is None  # closed at on_train_end, after publishing everything
    assert [(s.job_id, s.step) for s in published(bus)] == [("hf-own", 2), ("hf-own", 4), ("hf-own", 6)]


def test_hooks_import_and_derive_from_stand_ins_without_their_frameworks() -> None:
    if importlib.util.find_spec("transformers") is None:
        assert VigilCallback.__mro__[1].__name__ == "_TrainerCallbackStandIn"
    if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
        assert VigilLightningCallback.__mro__[1].__name__ == "_CallbackStandIn"


# ----------------------------------------------------------------------------- Lightning


class Optimizer:
    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr}]


class Trainer:
    """The parts of lightning.pytorch.Trainer a callback reads, and its hook-calling convention."""

    def __init__(self, callbacks: list[Any], accumulate_grad_batches: int = 1) -> None:
        self.callbacks = callbacks
        self.global_step = 0
        self.accumulate_grad_batches = accumulate_grad_batches
        self.optimizers = [Optimizer(0.01)]
        self.lightning_module = object()

    def call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            fn = getattr(callback, hook)
            if callable(fn):
                fn(self, self.lightning_module, *args)

    def fit(self, losses: list[Any], dict_outputs: bool = True) -> None:
        self.call("setup", "fit")
        self.call("on_fit_start")
        self.call("on_train_start")
        self.call("on_train_epoch_start")
        for batch_idx, loss in enumerate(losses):
            batch = ("x", "y")
            self.call("on_train_batch_start", batch, batch_idx)
            normalized = loss / self.accumulate_grad_batches
            self.call("on_before_backward", normalized)
            self.call("on_after_backward")
            if (batch_idx + 1) % self.accumulate_grad_batches == 0:
                optimizer = self.optimizers[0]
                self.call("on_before_optimizer_step", optimizer)
                self.global_step += 1
                optimizer.param_groups[0]["lr"] *= 0.5
                self.call("on_before_zero_grad", optimizer)
            self.call("on_train_batch_end", {"loss": normalized} if dict_outputs else normalized, batch, batch_idx)
        self.call("on_train_epoch_end")
        self.call("on_train_end")
        self.call("on_fit_end")
        self.call("teardown", "fit")


def test_lightning_callback_reports_each_optimizer_step_with_the_mean_loss() -> None:
    torch = pytest.importorskip("torch")
    bus = MemoryBus()
    reporter = Reporter(bus, job_id="pl", options=ReporterOptions(interval_s=60.0))
    callback = VigilLightningCallback(reporter, samples_per_batch=16)
    losses = [torch.tensor(float(v)) for v in (4.0, 2.0, 3.0, 1.0, 8.0, 0.0)]
    Trainer([callback], accumulate_grad_batches=2).fit(losses)
    reporter.close()
    got = published(bus)
    assert [s.step for s in got] == [1, 2, 3]
    assert [s.loss for s in got] == [3.0, 2.0, 4.0]  # mean of each step's two batches
    assert [s.learning_rate for s in got] == pytest.approx([0.005, 0.0025, 0.00125])
    for s in got:
        assert s.samples_per_s == pytest.approx(2 * 16 / s.step_time_s)
        assert s.tokens_per_s is None


def test_lightning_callback_accepts_a_bare_tensor_output_and_owns_its_reporter(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    bus = MemoryBus()
    monkeypatch.setenv("VIGIL_JOB_ID", "pl-own")
    callback = VigilLightningCallback(bus=bus)
    Trainer([callback]).fit([torch.tensor(1.5), torch.tensor(0.5)], dict_outputs=False)
    assert callback.reporter is None
    assert [(s.job_id, s.step, s.loss) for s in published(bus)] == [("pl-own", 1, 1.5), ("pl-own", 2, 0.5)]
