"""How a loss or gradient norm travels from the training thread to the publisher without a GPU sync.

``report()`` runs on the training thread and must never wait for the GPU. ``.item()`` on a CUDA tensor
copies the value to the host and so waits for every kernel queued before it on its stream: called in
the training loop, it stalls the CPU's run-ahead once per step. The choice, by device:

- **CUDA**: the training thread takes a snapshot on the device (``detach().clone()``: one small copy
  kernel queued on the current stream, no wait) and notes that stream. The publisher thread later
  reads the snapshot with ``.item()`` *inside that stream*, so the read is ordered after the kernels
  that computed the value even when the script trains on a side stream. The wait happens on the
  publisher thread, which releases the GIL meanwhile (PyTorch releases it around the device copy).
  ``detach`` drops the autograd graph, which would otherwise keep the step's activations alive while
  the value waits in the queue; ``clone`` protects against in-place updates after ``report()``
  returns (a tensor learning rate is updated in place by the LR schedulers).
- **CPU**: the value is read at once (``.item()``, well under a microsecond, no device to wait for).
- **Other devices** (XLA, MPS, ...): read at once too. Their runtimes have their own threading rules,
  and a wrong number is worse than a sync; this is the one case where ``report()`` may wait.

Plain numbers (float, int, numpy scalars) are converted with ``float()`` on the training thread, so a
value that is not a number fails there, with a clear error, rather than being lost later.
"""

from __future__ import annotations

import math
import sys
from typing import Any


class Deferred:
    """A CUDA value not read yet: a detached snapshot and the stream it was taken on."""

    __slots__ = ("stream", "tensor")

    def __init__(self, tensor: Any, stream: Any) -> None:
        self.tensor = tensor
        self.stream = stream


Held = float | Deferred


def hold(value: Any, name: str) -> Held:
    """Take ``value`` on the training thread without waiting for a GPU (see the module docstring)."""
    if type(value) is float:
        return value
    if not hasattr(value, "detach"):
        if isinstance(value, str | bytes):  # float("0.5") would pass, but a string here is a bug
            raise TypeError(f"report(): {name} must be a number or a one-element tensor, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"report(): {name} must be a number or a one-element tensor, got {value!r}") from exc
    if value.numel() != 1:
        raise ValueError(f"report(): {name} must be a one-element tensor, got shape {tuple(value.shape)}")
    if value.is_cuda:
        torch = sys.modules["torch"]
        return Deferred(value.detach().clone(), torch.cuda.current_stream(value.device))
    if value.requires_grad:
        value = value.detach()  # .item() on a tensor that requires grad goes through torch's warning machinery
    return float(value.item())


def optional(value: Any, name: str) -> Held | None:
    return None if value is None else hold(value, name)


def read(value: Held) -> float:
    """The number behind a held value; on the publisher thread, where waiting for the GPU is fine."""
    if not isinstance(value, Deferred):
        return value
    torch = sys.modules["torch"]
    with torch.cuda.stream(value.stream):
        return float(value.tensor.item())


def read_optional(value: Held | None) -> float | None:
    return None if value is None else read(value)


MAX_DURATION_S = 7 * 86400.0  # what the codec accepts for a step or compute time


def nan_if_none(value: float | None) -> float:
    """A measure for a step batch's column: NaN is "not reported"."""
    return math.nan if value is None else float(value)


def duration(value: float | None) -> float:
    """A step or compute time for a batch: NaN when not reported or outside 0..7 days (one such value
    would make the codec refuse the whole batch)."""
    seconds = nan_if_none(value)
    return seconds if 0.0 <= seconds <= MAX_DURATION_S else math.nan
