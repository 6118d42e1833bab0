"""A Hugging Face ``TrainerCallback`` that reports the Trainer's training logs as ``TrainingStep``s.

The Trainer gives a callback the loss only in ``on_log`` (``logs["loss"]``: the mean over the steps
since the previous log, across ranks, with ``grad_norm`` and ``learning_rate`` beside it), every
``logging_steps`` optimizer steps. So one ``TrainingStep`` is published per log, stamped with
``state.global_step``, and its ``step_time_s`` is the mean wall time per optimizer step since the
previous log (measured at ``on_step_end``, data loading included). Vigil's hang detector expects a
report at least every few step times: with the default ``logging_steps=500`` it would see a silent
job, so the callback warns at the start of training unless ``logging_steps`` is small (1 is best;
the Trainer then syncs the loss every step, its own cost, not Vigil's).

Throughput: ``state.num_input_tokens_seen`` (with ``include_num_input_tokens_seen``) counts every
rank's tokens, so tokens/s per rank divides it by ``args.world_size``; samples/s per rank is
``per_device_train_batch_size * gradient_accumulation_steps`` per optimizer step.

transformers is not a dependency: without it, this module still imports and the callback derives
from a stand-in with the same no-op events, so ``Trainer(callbacks=[VigilCallback()])`` works
wherever transformers is installed and nothing breaks where it is not.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from vigil.collectors.training.reporter import Reporter

log = logging.getLogger(__name__)
# Reports further apart than this many steps risk a false hang page (the detector's k is 8 step times).
MAX_QUIET_LOGGING_STEPS = 4


class _TrainerCallbackStandIn:
    """transformers' ``TrainerCallback`` events, as no-ops (used only when transformers is absent)."""

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any, **kwargs: Any) -> Any: ...
    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...
    def on_push_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any: ...


if TYPE_CHECKING:
    _Base = _TrainerCallbackStandIn
else:
    try:
        from transformers import TrainerCallback as _Base
    except ImportError:
        _Base = _TrainerCallbackStandIn


class VigilCallback(_Base):
    """``Trainer(..., callbacks=[VigilCallback()])``; the reporter is made at train start unless given."""

    def __init__(self, reporter: Reporter | None = None, **reporter_kwargs: Any) -> None:
        self.reporter = reporter
        self._owned = reporter is None
        self._reporter_kwargs = reporter_kwargs
        self._mark = time.perf_counter()  # end of the last reported step
        self._mark_step = 0
        self._mark_tokens = 0
        self._step_end: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.reporter is None:
            # Here, not in __init__: the Trainer has set up torch.distributed by now, so the rank is right.
            self.reporter = Reporter(**self._reporter_kwargs)
        self._mark, self._mark_step = time.perf_counter(), int(state.global_step)
        self._mark_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        strategy = getattr(args, "logging_strategy", "steps")
        steps = getattr(args, "logging_steps", 1)
        if getattr(strategy, "value", strategy) != "steps" or not 1 <= steps <= MAX_QUIET_LOGGING_STEPS:
            log.warning(
                "VigilCallback: the Trainer logs the loss (logging_strategy=%s, logging_steps=%s) less often than "
                "every %d steps; Vigil sees the job only then, and its hang detector may page a silent job. "
                "Set logging_steps=1 to report every step.",
                getattr(strategy, "value", strategy),
                steps,
                MAX_QUIET_LOGGING_STEPS,
            )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._step_end = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        # Evaluation logs carry eval_loss and the end-of-training summary train_loss: neither is a step.
        if self.reporter is None or not logs or "loss" not in logs:
            return
        step = int(state.global_step)
        steps = step - self._mark_step
        if steps <= 0:
            return
        end = self._step_end if self._step_end is not None else time.perf_counter()
        elapsed = max(end - self._mark, 1e-9)
        tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        tokens = (tokens_seen - self._mark_tokens) / max(int(getattr(args, "world_size", 1) or 1), 1)
        per_step = int(getattr(args, "per_device_train_batch_size", 0) or 0) * int(
            getattr(args, "gradient_accumulation_steps", 1) or 1
        )
        self.reporter.report(
            step,
            logs["loss"],
            step_time_s=elapsed / steps,
            tokens_per_s=tokens / elapsed if tokens > 0 else None,
            samples_per_s=per_step * steps / elapsed if per_step else None,
            grad_norm=logs.get("grad_norm"),
            learning_rate=logs.get("learning_rate"),
        )
        self._mark, self._mark_step, self._mark_tokens = end, step, tokens_seen

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.reporter is None:
            return
        if self._owned:
            self.reporter.close()
            self.reporter = None
        else:
            self.reporter.flush()
