"""Throughput change point per job: a robust two-sided CUSUM on tokens/s or step time.

A training job's throughput is flat for hours and then drops when a node degrades, a link
renegotiates or the data loader starves; a z-score on single steps misses a 10 % drop buried in
step-to-step noise, a CUSUM accumulates it. Each feature is standardised against a slow EWMA
level and EW mean absolute deviation (the formulas of ``models/robust.py``), the standardised
value is clipped at ``clip`` sigmas (one stalled step cannot trip it on its own: Huber's CUSUM), and
``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)`` accumulate drift beyond ``k`` sigmas. The
score is the largest of ``S+``/``S-`` over the features, in sigmas (page at ``h`` ~ 8). ``k = 1``
targets shifts of 2 sigmas or more, found in about ``h / (shift - k)`` steps; with ``k = 0.5`` i.i.d.
noise alone crosses 8 about once in 10^4 steps per feature, too often for a job stepping twice a second.

The baseline keeps learning slowly (``alpha``), so after a lasting change the sums fall back
and the alert resolves once the new throughput is the norm; ``explain`` says which feature moved
and which way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.ring import as_rows, pack, unpack

MAD_TO_SIGMA = 1.2533  # mean absolute deviation to sigma (normal data), as the z-score detector
FIELDS = ("n", "mean", "mad", "up", "down")


class ChangePointDetector(Detector):
    name = "changepoint"

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        k: float = 1.0,
        clip: float = 4.0,
        alpha: float = 0.01,
        warmup: int = 30,
        rel_floor: float = 0.005,
        abs_floor: float = 1e-9,
    ) -> None:
        super().__init__(features)
        if k < 0 or clip <= k or not 0 < alpha < 1 or warmup < 2:
            raise ValueError("need k >= 0, clip > k, alpha in (0, 1), warmup >= 2")
        self.k, self.clip, self.alpha, self.warmup = k, clip, alpha, warmup
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        self.s = np.zeros((len(FIELDS), len(self.features)))  # rows: FIELDS

    @classmethod
    def test_options(cls) -> dict[str, Any]:
        return {"warmup": 5}

    def _grow(self, n_features: int) -> None:
        self.s = np.pad(self.s, ((0, 0), (0, n_features - self.s.shape[1])))

    def _z(self, x: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Clipped robust z per feature, and where it counts (a value, past the warm-up)."""
        n, mean, mad = self.s[0], self.s[1], self.s[2]
        scale = np.maximum(mad * MAD_TO_SIGMA, np.maximum(self.rel_floor * np.abs(mean), self.abs_floor))
        with np.errstate(invalid="ignore"):
            z = np.clip((x[: len(n)] - mean) / scale, -self.clip, self.clip)
        valid = (n >= self.warmup) & np.isfinite(z)
        return np.where(valid, z, 0.0), valid

    def _sums(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """S+ and S- after ``x``; a missing value (or a feature still warming up) leaves them as they are."""
        z, valid = self._z(x)
        up = np.where(valid, np.maximum(0.0, self.s[3] + z - self.k), self.s[3])
        down = np.where(valid, np.maximum(0.0, self.s[4] - z - self.k), self.s[4])
        return up, down

    def score_many(self, X: FloatArray) -> FloatArray:
        out = np.zeros(len(X))
        for i, row in enumerate(as_rows(X, len(self.features))):
            up, down = self._sums(row)
            out[i] = max(up.max(initial=0.0), down.max(initial=0.0))
        return out

    def learn_many(self, X: FloatArray) -> None:
        self.process_many(X)

    def process_many(self, X: FloatArray) -> FloatArray:
        """Per row: the sums with the row (its score), then the baseline learns the row."""
        X = as_rows(X, len(self.features))
        out = np.zeros(len(X))
        s = self.s
        for i, row in enumerate(X[:, : s.shape[1]]):
            s[3], s[4] = self._sums(row)
            out[i] = max(s[3].max(initial=0.0), s[4].max(initial=0.0))
            ok = np.isfinite(row)
            a = np.maximum(self.alpha, 1.0 / (s[0] + 1))
            delta = np.where(ok, row - s[1], 0.0)
            first = ok & (s[0] == 0)
            s[1] = np.where(first, row, s[1] + a * delta)
            s[2] = np.where(first, 0.0, np.where(ok, s[2] + a * (np.abs(delta) - s[2]), s[2]))
            s[0] += ok
        return out

    def explain(self, x: Mapping[str, float]) -> dict[str, Any]:
        """Which feature's sum is largest and in which direction (``up`` = the value rose)."""
        if not self.features:
            return {}
        up, down = self._sums(np.array([x.get(f, np.nan) for f in self.features]))
        j_up, j_down = int(np.argmax(up)), int(np.argmax(down))
        rising = up[j_up] >= down[j_down]
        j = j_up if rising else j_down
        return {
            "feature": self.features[j],
            "direction": "up" if rising else "down",
            "cusum": round(float(max(up[j_up], down[j_down])), 3),
            "baseline": float(self.s[1][j]),
        }

    def state(self) -> dict[str, Any]:
        return {"s": pack(self.s)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.s = unpack(state["s"])
