"""A Lightning ``Callback`` that reports every optimizer step as a ``TrainingStep``.

Lightning calls ``on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)`` after every
batch; ``outputs`` is what ``training_step`` returned, and its ``"loss"`` is divided by
``accumulate_grad_batches``. So the callback adds up the losses of a step's batches (a sum of
detached tensors, no sync: the values are read by the reporter's publisher thread) and reports when
``trainer.global_step`` has moved, i.e. once per optimizer step, with the step's mean loss. Step time
is the wall time between two reported steps (data loading included); the learning rate is read from
the first optimizer's first parameter group. Samples/s and tokens/s need the batch sizes, which
Lightning does not know in general: pass ``samples_per_batch`` / ``tokens_per_batch`` (this rank's).

Lightning is not a dependency: the module imports without it (``lightning.pytorch`` or the older
``pytorch_lightning`` is used when present), deriving from a stand-in with the same no-op hooks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vigil.collectors.training.reporter import Reporter


class _CallbackStandIn:
    """Lightning's ``Callback`` training hooks, as no-ops (used only when Lightning is absent)."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None: ...
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None: ...
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_fit_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None: ...
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None: ...
    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None: ...
    def on_after_backward(self, trainer: Any, pl_module: Any) -> None: ...
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None: ...
    def on_before_zero_grad(self, trainer: Any, pl_module: Any, optimizer: Any) -> None: ...
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None: ...


if TYPE_CHECKING:
    _Base = _CallbackStandIn
else:
    try:
        from lightning.pytorch.callbacks import Callback as _Base
    except ImportError:
        try:
            from pytorch_lightning.callbacks import Callback as _Base
        except ImportError:
            _Base = _CallbackStandIn


def loss_of(outputs: Any) -> Any:
    """The loss in ``training_step``'s output: a tensor, or a mapping's ``"loss"``; None when skipped."""
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    return outputs


class VigilLightningCallback(_Base):
    """``Trainer(callbacks=[VigilLightningCallback()])``; the reporter is made at train start unless given."""

    def __init__(
        self,
        reporter: Reporter | None = None,
        *,
        samples_per_batch: int | None = None,
        tokens_per_batch: int | None = None,
        **reporter_kwargs: Any,
    ) -> None:
        self.reporter = reporter
        self._owned = reporter is None
        self._reporter_kwargs = reporter_kwargs
        self.samples_per_batch = samples_per_batch
        self.tokens_per_batch = tokens_per_batch
        self._mark = time.perf_counter()
        self._mark_step = 0
        self._loss: Any = None  # the current step's batches' losses, summed
        self._batches = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.reporter is None:
            # Here, not in __init__: the strategy has set up torch.distributed by now, so the rank is right.
            self.reporter = Reporter(**self._reporter_kwargs)
        self._mark, self._mark_step = time.perf_counter(), int(trainer.global_step)
        self._loss, self._batches = None, 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = loss_of(outputs)
        if loss is not None:
            self._loss = loss if self._loss is None else self._loss + loss
            self._batches += 1
        step = int(trainer.global_step)
        if self.reporter is None or step <= self._mark_step:
            return  # gradient accumulation: no optimizer step yet
        now = time.perf_counter()
        if self._loss is not None:
            elapsed = max(now - self._mark, 1e-9)
            optimizers = getattr(trainer, "optimizers", None) or []
            self.reporter.report(
                step,
                self._loss,
                step_time_s=elapsed / (step - self._mark_step),
                samples_per_s=self._rate(self.samples_per_batch, elapsed),
                tokens_per_s=self._rate(self.tokens_per_batch, elapsed),
                learning_rate=optimizers[0].param_groups[0]["lr"] if optimizers else None,
            )
        self._mark, self._mark_step = now, step
        self._loss, self._batches = None, 0

    def _rate(self, per_batch: int | None, elapsed: float) -> float | None:
        return per_batch * self._batches / elapsed if per_batch else None

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.reporter is None:
            return
        if self._owned:
            self.reporter.close()
            self.reporter = None
        else:
            self.reporter.flush()
