"""Optional deep model: a small MLP autoencoder over one host's feature vectors (extra ``deep``).

Same window, scaling and refit schedule as IsolationForest and PCA (``window.py``); the score is
the mean squared reconstruction error of a robust-scaled row. It is off by default: in
``vigil bench models --smd`` it ties PCA's reconstruction error on the four SMD machines (AUPRC
0.46 both) and beats it on the six ASD servers (0.24 against 0.18), for about a hundred times
PCA's CPU per refit; PCA is the default multivariate model and this one is for hosts whose
metrics relate non-linearly. torch is imported when the model is made, so nothing else depends on
it; without it, making one raises ImportError (the registry names the extra to install).

Training is seeded (weights and batch order from the model's own seed, not torch's global RNG)
and the weights go into the snapshot, so a restored model scores exactly as the original.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from vigil.analytics.models.base import FloatArray
from vigil.analytics.models.ring import pack, unpack
from vigil.analytics.models.window import WindowFit, WindowModel


@contextmanager
def _one_thread(torch: Any) -> Iterator[None]:
    """A net this small is slower with intra-op threads (they contend for cores); restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # the optional extra is missing
        raise ImportError("the autoencoder needs torch: pip install 'vigil[deep]'") from exc
    return torch


class AutoencoderDetector(WindowModel):
    name = "autoencoder"
    check_rtol = 1e-5  # torch computes in float32: a batch of rows need not round like one row at a time

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        hidden: int = 32,
        bottleneck: int = 4,
        epochs: int = 20,
        batch: int = 64,
        lr: float = 3e-3,
        window: int = 1024,
        refit_every: int = 256,
        min_fit: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(features, window=window, refit_every=refit_every, min_fit=min_fit, seed=seed)
        if min(hidden, bottleneck, epochs, batch) < 1 or lr <= 0:
            raise ValueError("hidden, bottleneck, epochs and batch must be >= 1, lr > 0")
        self.hidden, self.bottleneck, self.epochs, self.batch, self.lr = hidden, bottleneck, epochs, batch, lr
        self.torch = _torch()

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"window": 64, "refit_every": 32, "min_fit": 16, "epochs": 3}

    def _network(self, d: int) -> Any:
        nn = self.torch.nn
        return nn.Sequential(
            nn.Linear(d, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.bottleneck),  # a linear code: a ReLU here can switch code units off for good
            nn.Linear(self.bottleneck, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, d),
        )

    def _fit_model(self, Z: FloatArray) -> Any:
        with _one_thread(self.torch):
            return self._train(Z)

    def _train(self, Z: FloatArray) -> Any:
        torch = self.torch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # layer initialisation draws from the global generator
            net = self._network(Z.shape[1])
        order = torch.Generator().manual_seed(self.seed)
        data = torch.as_tensor(Z, dtype=torch.float32)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        for _ in range(self.epochs):
            perm = torch.randperm(len(data), generator=order)
            for i in range(0, len(data), self.batch):
                rows = data[perm[i : i + self.batch]]
                opt.zero_grad()
                loss = torch.mean((net(rows) - rows) ** 2)
                loss.backward()
                opt.step()
        return net.eval()

    def _score_model(self, model: Any, Z: FloatArray) -> FloatArray:
        torch = self.torch
        with torch.no_grad(), _one_thread(torch):
            data = torch.as_tensor(Z, dtype=torch.float32)
            return np.asarray(torch.mean((model(data) - data) ** 2, dim=1).numpy(), dtype=np.float64)

    def _dump_model(self, fit: WindowFit) -> Any:
        weights = {k: pack(v.detach().numpy().astype(np.float64)) for k, v in fit.model.state_dict().items()}
        return {**self.pack_scaling(fit), "weights": weights}

    def _load_model(self, raw: Any, rows: FloatArray, at: int) -> WindowFit:
        if not isinstance(raw, Mapping):
            return super()._load_model(raw, rows, at)
        torch = self.torch
        center, scale = self.unpack_scaling(raw)
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave torch's RNG be
            net = self._network(len(center))
        net.load_state_dict({k: torch.as_tensor(unpack(v), dtype=torch.float32) for k, v in raw["weights"].items()})
        return WindowFit(center, scale, net.eval(), len(rows), at)
