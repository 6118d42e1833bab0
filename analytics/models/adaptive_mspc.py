"""Adaptive MSPC: PCA's T² + Q on features normalised online, following a server's regime changes.

Why: a model frozen after training (:mod:`mspc`) judges a server that moved to a new operating level
(more traffic, a new deployment, a changed job mix) anomalous for as long as it stays there. Servers
do that without anyone labelling it, so a monitoring model must follow them without labels, yet not
learn an incident as the new normal. This model learns as a stream, score first, then learn:

- Per feature, an exponentially weighted (EW) mean with a half-life of ``half_life`` rows: the
  location, which follows the server. Once warm, its updates are winsorised (a deviation beyond
  ``WINSOR`` scales counts as ``WINSOR`` scales, Huber-style), so a spike that is learnt moves it
  little.
- Per feature, the spread: the plain EW variance around that mean, with the long half-life
  ``memory`` (a month by default). Plain, because a metric's normal spikes are part of its normal
  spread; long, because rare but normal patterns (a weekly job) must still be known when they come
  back. A robust spread with a one-day half-life, this model's first version, made such metrics
  dominate the score's tail and lost to the frozen model on the train-only dev data (see
  :mod:`vigil.analytics.eval.smd_dev`). The scale is floored at ``SCALE_FLOOR`` of the range seen
  so far (or of the level, for a feature constant so far): a metric that sits still and then
  twitches by a hair is not a hundred-sigma event.
- The EW covariance of the normalised features, with the same long memory (learnt from row
  ``warmup / 2`` on, when means and scales are no longer raw), whose principal subspace gives
  Hotelling's T² and the residual Q, combined and normalised as in :class:`mspc.Principal` (a
  typical row scores about 1). Each normalised value is capped at ``Z_CAP`` scales, so one metric
  with a tiny learnt scale cannot swamp all the others.
- A gate: a row whose score (trailing mean over ``SMOOTH`` rows) exceeds ``gate`` is *suspect* and
  is not learnt, so an incident is not absorbed into the normal model while it lasts.
- The level-shift rule: once at least ``accept_after`` of the last ``2 * accept_after`` rows were
  suspect, the change has lasted longer than an incident is taken to last and is accepted as the new
  normal: the metrics that moved by more than ``WINSOR`` scales (which the winsorised learning would
  follow only slowly) jump to a fast EW mean (half-life ``accept_after / 4`` rows, tracked over
  every row, suspect or not), and every row is learnt again until the suspect share falls below
  half. The spread and covariance are learnt around the moved mean, so the jump itself does not
  inflate them.

Rows are processed in chunks of ``chunk`` rows, counted from the first row ever processed, so the
result does not depend on how the stream is batched: every row of a chunk is scored with the state
learnt before the chunk, and once the chunk is complete it is learnt in one vectorised update (EW
weights ``1 - (1 - a)^k`` for k rows); the principal subspace is re-derived every ``REFIT_EVERY``
rows. A row is thus judged by a model at most ``chunk - 1`` rows older (its subspace at most
``REFIT_EVERY`` rows older) than a row-by-row loop would use; with half-lives of hundreds of rows
that changes little, and a month of one-minute data takes about a second. ``learn_many`` is
``process_many`` without the scores (the gate needs them), so up to ``chunk - 1`` rows wait,
scored but not learnt, in ``pending`` (part of the state); ``score_many`` never learns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.mspc import VARIANCE_KEPT, Principal, listed, unlisted

BoolArray = npt.NDArray[np.bool_]

# Defaults: the setting the train-only study chose on SMD/ASD (vigil eval smd-dev), for one-minute samples.
HALF_LIFE = 720.0  # rows: half a day of one-minute samples, the half-life of the mean
MEMORY = 43200.0  # rows: a month of one-minute samples, the half-life of the spread and the covariance
ACCEPT_AFTER = 360  # rows: a change lasting six hours of one-minute samples is a new normal
GATE = 30.0  # smoothed score above which a row is suspect (a typical normal row scores about 1)
CHUNK = 32  # rows scored with one state, then learnt together
WARMUP = 256  # rows learnt (without gate or winsorising) before the first score
WINSOR = 3.0  # learning: a deviation beyond 3 scales counts as 3 scales
Z_CAP = 10.0  # scoring: one metric counts at most 10 scales
SCALE_FLOOR = 0.01  # of the range (or level) seen so far: the smallest move that counts as one scale
TINY = 1e-12  # the scale of a feature that sat at exactly zero so far: any move is a full Z_CAP
REFIT_EVERY = 128  # rows between re-derivations of the principal subspace (an eigen-solve each)
SMOOTH = 5  # rows in the gate's trailing mean of the score
FAST_SHARE = 4  # the fast mean's half-life is accept_after / FAST_SHARE: caught up within accept_after rows


def _alpha(half_life: float) -> float:
    return float(1.0 - 2.0 ** (-1.0 / half_life))


class AdaptiveMSPC(Detector):
    name = "adaptive_mspc"
    version = 1

    def __init__(
        self,
        features: Sequence[str] = (),
        half_life: float = HALF_LIFE,
        memory: float = MEMORY,
        accept_after: int = ACCEPT_AFTER,
        gate: float = GATE,
        chunk: int = CHUNK,
        warmup: int = WARMUP,
        variance_kept: float = VARIANCE_KEPT,
    ) -> None:
        super().__init__(features)
        self._configure(half_life, memory, accept_after, gate, chunk, warmup, variance_kept)
        d = len(self.features)
        self.seen = 0  # rows of the chunks learnt
        self.n = 0  # rows learnt
        self.n_cov = 0  # rows learnt into the covariance
        self.count = np.zeros(d)  # values learnt, per feature
        self.mean = np.full(d, np.nan)  # NaN: feature never learnt
        self.var = np.full(d, np.nan)
        self.fast = np.full(d, np.nan)  # fast EW mean over every row: the level a lasting change moved to
        self.low = np.full(d, np.nan)
        self.high = np.full(d, np.nan)
        self.cov = np.zeros((d, d))  # EW covariance of the normalised features
        self.fitted: FloatArray | None = None  # the covariance the subspace in use was derived from
        self.suspect = np.zeros(2 * self.accept_after - 1, dtype=bool)  # the last rows' gate decisions
        self.recent = np.zeros(0)  # the last SMOOTH - 1 raw scores, for the gate's trailing mean
        self.pending = np.zeros((0, d))  # the rows of the chunk under way: scored, not learnt yet
        self.pending_scores = np.zeros(0)
        self._principal: Principal | None = None

    def _configure(
        self,
        half_life: float,
        memory: float,
        accept_after: int,
        gate: float,
        chunk: int,
        warmup: int,
        variance_kept: float,
    ) -> None:
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0 rows, got {half_life}")
        if not memory > 0:
            raise ValueError(f"memory must be > 0 rows, got {memory}")
        if accept_after < 1:
            raise ValueError(f"accept_after must be >= 1 row, got {accept_after}")
        if not gate > 0:
            raise ValueError(f"gate must be > 0, got {gate}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 row, got {chunk}")
        if warmup < 2:
            raise ValueError(f"warmup must be >= 2 rows, got {warmup}")
        if not 0.0 < variance_kept < 1.0:
            raise ValueError(f"variance_kept must be in (0, 1), got {variance_kept}")
        self.half_life, self.memory = float(half_life), float(memory)
        self.accept_after, self.gate = int(accept_after), float(gate)
        self.chunk, self.warmup, self.variance_kept = int(chunk), int(warmup), float(variance_kept)

    def _grow(self, n_features: int) -> None:
        extra = n_features - len(self.mean)
        for attr in ("mean", "var", "fast", "low", "high"):
            setattr(self, attr, np.concatenate((getattr(self, attr), np.full(extra, np.nan))))
        self.count = np.concatenate((self.count, np.zeros(extra)))
        self.pending = np.pad(self.pending, ((0, 0), (0, extra)), constant_values=np.nan)
        self.cov = np.pad(self.cov, ((0, extra), (0, extra)))
        if self.fitted is not None:
            self.fitted = np.pad(self.fitted, ((0, extra), (0, extra)))
        self._principal = None

    def _rows(self, X: FloatArray) -> FloatArray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] > len(self.features):
            raise ValueError(f"expected rows of at most {len(self.features)} features, got shape {X.shape}")
        if X.shape[1] < len(self.features):  # rows built before a feature appeared: it is missing there
            X = np.pad(X, ((0, 0), (0, len(self.features) - X.shape[1])), constant_values=np.nan)
        return X

    def scale(self) -> FloatArray:
        """Each feature's current scale: its EW standard deviation, floored (see the module doc)."""
        width = np.nan_to_num(self.high - self.low)
        level = np.abs(np.nan_to_num(self.mean))
        floor = SCALE_FLOOR * np.maximum(width, level)
        floor = np.where(floor > 0, floor, TINY)
        scale: FloatArray = np.maximum(np.sqrt(np.nan_to_num(self.var)), floor)
        return scale

    def _normalised(self, X: FloatArray, scale: FloatArray, cap: float) -> FloatArray:
        z = np.clip((X - self.mean) / scale, -cap, cap)
        normalised: FloatArray = np.nan_to_num(z, nan=0.0)  # missing, or never learnt: at the mean
        return normalised

    def score_many(self, X: FloatArray) -> FloatArray:
        X = self._rows(X)
        return self._score(X, self.scale())

    def explain_many(self, X: FloatArray) -> FloatArray:
        """How far each feature of each row is from its learnt mean, in its scale (capped at ``Z_CAP``): the
        metric that moved most is named in an alert's reason. Zero before the model is warm."""
        X = self._rows(X)
        if self.n < self.warmup:
            return np.zeros(X.shape)
        return np.abs(self._normalised(X, self.scale(), Z_CAP))

    def _score(self, X: FloatArray, scale: FloatArray) -> FloatArray:
        if self.n < self.warmup or len(X) == 0 or self.fitted is None:
            return np.zeros(len(X))
        if self._principal is None:
            self._principal = Principal.fit(self.fitted, self.variance_kept)
        return self._principal.score(self._normalised(X, scale, Z_CAP))

    def learn_many(self, X: FloatArray) -> None:
        self.process_many(X)

    def process_many(self, X: FloatArray) -> FloatArray:
        """Causal, chunk by chunk: every row of a chunk is scored with the state before the chunk, and the chunk
        is learnt once complete (the rows of an unfinished one wait in ``pending``)."""
        X = self._rows(X)
        out = np.empty(len(X))
        start = 0
        while start < len(X):
            stop = min(len(X), start + self.chunk - len(self.pending))
            out[start:stop] = self._score(X[start:stop], self.scale())
            self.pending = np.concatenate((self.pending, X[start:stop]))
            self.pending_scores = np.concatenate((self.pending_scores, out[start:stop]))
            if len(self.pending) == self.chunk:
                self._step(self.pending, self.pending_scores)
                self.pending, self.pending_scores = self.pending[:0], self.pending_scores[:0]
            start = stop
        return out

    def _step(self, X: FloatArray, raw: FloatArray) -> None:
        """Learn one complete chunk, whose rows scored ``raw``."""
        scale = self.scale()
        warm = self.n >= self.warmup
        history = np.concatenate((self.recent, raw))
        if warm:
            cum = np.concatenate(([0.0], np.cumsum(history)))
            ends = np.arange(len(self.recent) + 1, len(history) + 1)
            starts = np.maximum(ends - SMOOTH, 0)
            suspect = (cum[ends] - cum[starts]) / (ends - starts) > self.gate
        else:
            suspect = np.zeros(len(X), dtype=bool)
        self.recent = history[-(SMOOTH - 1) :]
        # the level-shift rule: suspect rows in the window of 2 * accept_after rows ending at each row
        flags = np.concatenate((self.suspect, suspect))
        cum_flags = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
        lead = len(self.suspect)
        in_window = cum_flags[lead + 1 : lead + len(X) + 1] - cum_flags[: len(X)]
        accepted = in_window >= self.accept_after
        self.suspect = flags[len(flags) - lead :]
        before = self.n
        self._learn(X, ~suspect & ~accepted, accepted, warm, scale)
        self.seen += len(X)
        # The subspace is re-derived every REFIT_EVERY rows, and when the model turns warm: the first
        # scores must not use a covariance from the first chunk (with a short warm-up, a few rows).
        warming = before < self.warmup <= self.n
        if self.fitted is None or warming or self.seen // REFIT_EVERY > (self.seen - len(X)) // REFIT_EVERY:
            self.fitted, self._principal = self.cov.copy(), None

    def _learn(self, X: FloatArray, normal: BoolArray, accepted: BoolArray, warm: bool, scale: FloatArray) -> None:
        """``scale`` is the one before this chunk: it bounds the winsorised updates of the mean."""
        finite = np.isfinite(X)
        never = np.full(X.shape[1], np.inf)  # no warm-up for the fast mean: plain EW from its first value
        self.fast = _ew_merge(self.fast, X, finite, never, _alpha(self.accept_after / FAST_SHARE))
        learnt = normal | accepted
        if not learnt.any():
            return
        alpha = _alpha(self.half_life)
        if accepted.any():
            # a lasting change: the metrics that moved further than the winsorised learning follows jump to where
            # they are now; the others (a daily cycle, a small shift) keep their slow mean
            moved = np.abs(self.fast - self.mean) > WINSOR * scale
            self.mean = np.where(moved, self.fast, self.mean)
        rows, seen = X[learnt], finite[learnt]
        target = rows
        if warm:  # a value beyond WINSOR scales pulls as if it were WINSOR scales away
            known = np.isfinite(self.mean)
            target = np.where(known, self.mean + np.clip(rows - self.mean, -WINSOR * scale, WINSOR * scale), rows)
        self.mean = _ew_merge(self.mean, target, seen, self.count, alpha)
        # second moments: plain (a metric's normal spikes are part of its normal spread), with the long memory
        slow = _alpha(self.memory)
        self.var = _ew_merge(self.var, (rows - self.mean) ** 2, seen, self.count, slow)
        self.count += seen.sum(axis=0)
        self.low = np.fmin(self.low, np.where(seen, rows, np.inf).min(axis=0))
        self.high = np.fmax(self.high, np.where(seen, rows, -np.inf).max(axis=0))
        self.low[np.isinf(self.low)] = np.nan  # no value seen yet
        self.high[np.isinf(self.high)] = np.nan
        k = len(rows)
        if self.n >= self.warmup // 2:  # the first rows' means and scales are too raw to normalise with
            z = self._normalised(rows, self.scale(), Z_CAP)
            weight = max(1.0 - (1.0 - slow) ** k, k / (self.n_cov + k))
            self.cov += weight * (z.T @ z / k - self.cov)
            self.n_cov += k
        self.n += k

    # -- state
    def state(self) -> dict[str, Any]:
        return {
            "half_life": self.half_life,
            "memory": self.memory,
            "accept_after": self.accept_after,
            "gate": self.gate,
            "chunk": self.chunk,
            "warmup": self.warmup,
            "variance_kept": self.variance_kept,
            "seen": self.seen,
            "n": self.n,
            "n_cov": self.n_cov,
            "count": self.count.tolist(),
            "mean": listed(self.mean),
            "var": listed(self.var),
            "fast": listed(self.fast),
            "low": listed(self.low),
            "high": listed(self.high),
            "cov": self.cov.tolist(),
            "fitted": None if self.fitted is None else self.fitted.tolist(),
            "suspect": [int(flag) for flag in self.suspect],
            "recent": self.recent.tolist(),
            "pending": [listed(row) for row in self.pending],
            "pending_scores": self.pending_scores.tolist(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._configure(
            float(state["half_life"]),
            float(state["memory"]),
            int(state["accept_after"]),
            float(state["gate"]),
            int(state["chunk"]),
            int(state["warmup"]),
            float(state["variance_kept"]),
        )
        d = len(self.features)
        self.seen, self.n, self.n_cov = int(state["seen"]), int(state["n"]), int(state["n_cov"])
        self.count = np.asarray(state["count"], dtype=np.float64).reshape(d)
        for attr in ("mean", "var", "fast", "low", "high"):
            setattr(self, attr, unlisted(state[attr]).reshape(d))
        self.cov = np.asarray(state["cov"], dtype=np.float64).reshape(d, d)
        fitted = state["fitted"]
        self.fitted = None if fitted is None else np.asarray(fitted, dtype=np.float64).reshape(d, d)
        self.suspect = np.asarray(state["suspect"], dtype=bool).reshape(2 * self.accept_after - 1)
        self.recent = np.asarray(state["recent"], dtype=np.float64).reshape(-1)
        self.pending = np.array([unlisted(row) for row in state["pending"]]).reshape(-1, d)
        self.pending_scores = np.asarray(state["pending_scores"], dtype=np.float64).reshape(len(self.pending))
        self._principal = None


def _ew_merge(current: FloatArray, rows: FloatArray, seen: BoolArray, count: FloatArray, alpha: float) -> FloatArray:
    """Per feature, ``current`` moved towards the mean of its ``k`` finite ``rows`` by ``1 - (1 - alpha)^k``.

    That is k EW steps taken at once (exact when the k values are equal). While ``count`` (values
    learnt before) is under the half-life, the weight is at least ``k / (count + k)``: a plain running
    mean, so the start is not dominated by the first value. A feature never learnt starts at the mean.
    """
    k = seen.sum(axis=0).astype(np.float64)
    sums = np.where(seen, rows, 0.0).sum(axis=0)
    batch = np.divide(sums, k, out=np.full(len(k), np.nan), where=k > 0)
    weight = np.maximum(1.0 - (1.0 - alpha) ** k, k / np.maximum(count + k, 1.0))
    merged = np.where(np.isnan(current), batch, current + weight * (batch - current))
    result: FloatArray = np.where(k > 0, merged, current)
    return result
