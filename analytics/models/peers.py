"""Peer comparison: each member against the median of its group at the same instant.

Two uses of one computation: a GPU against its node siblings (the same metric across the GPUs of a
host) and a rank against the other ranks of its job (step or compute time: the straggler). A
member's deviation is ``(value - group median) / scale``, scale = max(MAD x 1.4826, ``rel_floor``
x |median|, ``abs_floor``) so a flat group (eight GPUs at the same clock) does not turn a rounding
step into a page. Groups with fewer than ``min_peers`` finite members give 0.

:func:`peer_deviation` is vectorised over any number of groups (one sort), so it serves the
live stages (``vigil.analytics.stages.siblings``) as well as the per-host models below, whose
score is the largest deviation that *persisted* ``persist`` rows in the same direction and whose
``explain`` names the member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from vigil.analytics.models.base import Detector, FloatArray
from vigil.analytics.models.columns import IntArray
from vigil.analytics.models.ring import as_rows, pack, unpack

MAD_TO_SIGMA = 1.4826


def group_median(group: IntArray, values: FloatArray) -> tuple[FloatArray, IntArray]:
    """Per element: the median of the finite values of its group, and how many there are."""
    med = np.full(values.size, np.nan)
    count = np.zeros(values.size, dtype=np.intp)
    ok = np.flatnonzero(np.isfinite(values))
    if not ok.size:
        return med, count
    keys, dense = np.unique(group[ok], return_inverse=True)
    order = np.lexsort((values[ok], dense))
    sizes = np.bincount(dense, minlength=keys.size)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    ranked = values[ok][order]
    medians = 0.5 * (ranked[starts + (sizes - 1) // 2] + ranked[starts + sizes // 2])
    member_group = np.searchsorted(keys, group)
    known = (member_group < keys.size) & (keys[np.minimum(member_group, keys.size - 1)] == group)
    med[known] = medians[member_group[known]]
    count[known] = sizes[member_group[known]]
    return med, count


def peer_deviation(
    group: IntArray, values: FloatArray, *, rel_floor: float = 0.02, abs_floor: float = 1e-3, min_peers: int = 3
) -> tuple[FloatArray, FloatArray]:
    """Signed robust deviation of each element from its group, and the group medians (NaN: none)."""
    med, count = group_median(group, values)
    mad, _ = group_median(group, np.abs(values - med))
    scale = np.maximum(np.nan_to_num(mad) * MAD_TO_SIGMA, np.maximum(rel_floor * np.abs(np.nan_to_num(med)), abs_floor))
    with np.errstate(invalid="ignore"):
        z = (values - med) / scale
    return np.where((count >= min_peers) & np.isfinite(z), z, 0.0), med


def peer_deviation_rows(
    X: FloatArray, *, rel_floor: float = 0.02, abs_floor: float = 1e-3, min_peers: int = 3
) -> tuple[FloatArray, FloatArray]:
    """:func:`peer_deviation` when every group is one row of ``X`` (finite values; one step's ranks, one
    host's GPUs): the same figures from two sorts along the rows instead of a sort of every group.
    Returns the deviations (shape of ``X``) and each row's median."""
    med = np.median(X, axis=1)
    mad = np.median(np.abs(X - med[:, None]), axis=1)
    scale = np.maximum(mad * MAD_TO_SIGMA, np.maximum(rel_floor * np.abs(med), abs_floor))
    z = (X - med[:, None]) / scale[:, None]
    return (z if X.shape[1] >= min_peers else np.zeros_like(X)), med


# -- the models


class PeerDetector(Detector):
    """One row = one metric across the members of a group (features are members); see the module."""

    name = "peer_gpu"
    member = "gpu_index"  # the label that names a member in ``explain``
    two_sided = True  # a GPU hotter or cooler than its siblings; a rank only when slower

    def __init__(
        self,
        features: Sequence[str] = (),
        *,
        persist: int = 3,
        rel_floor: float = 0.02,
        abs_floor: float = 1e-3,
        min_peers: int = 3,
    ) -> None:
        super().__init__(features)
        if persist < 1 or min_peers < 2:
            raise ValueError("persist must be >= 1 and min_peers >= 2")
        self.persist, self.min_peers = persist, min_peers
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        self.history = np.zeros((persist - 1, len(self.features)))  # last persist-1 rows of deviations

    def _grow(self, n_features: int) -> None:
        self.history = np.pad(self.history, ((0, 0), (0, n_features - self.history.shape[1])))

    def deviations(self, X: FloatArray) -> FloatArray:
        """Signed deviation of every member of every row (rows are independent groups)."""
        X = as_rows(X, len(self.features))
        group = np.repeat(np.arange(len(X)), X.shape[1])
        z, _ = peer_deviation(
            group, X.ravel(), rel_floor=self.rel_floor, abs_floor=self.abs_floor, min_peers=self.min_peers
        )
        return z.reshape(X.shape)

    def _persistent(self, Z: FloatArray, history: FloatArray) -> FloatArray:
        """Per row: the deviation held over that row and the ``persist - 1`` rows before it, where the
        rows before row i are ``history`` followed by the rows of ``Z`` before i (the causal chain)."""
        d, k = Z.shape[1], len(history)
        full = np.vstack([np.pad(history, ((0, 0), (0, d - history.shape[1]))), Z])
        low, high = Z.copy(), Z.copy()
        for lag in range(1, k + 1):
            past = full[k - lag : k - lag + len(Z)]
            low, high = np.minimum(low, past), np.maximum(high, past)
        up = np.maximum(low, 0.0)  # above the group in every row of the run
        return np.maximum(up, np.maximum(-high, 0.0)) if self.two_sided else up

    def _held(self, Z: FloatArray) -> FloatArray:
        """Each row on its own after the learnt history (no chaining between the rows of ``Z``)."""
        hist = np.pad(self.history, ((0, 0), (0, Z.shape[1] - self.history.shape[1])))
        low = np.minimum(Z, hist.min(axis=0, initial=np.inf))
        high = np.maximum(Z, hist.max(axis=0, initial=-np.inf))
        up = np.maximum(low, 0.0)
        return np.asarray(np.maximum(up, np.maximum(-high, 0.0)) if self.two_sided else up, dtype=np.float64)

    def score_many(self, X: FloatArray) -> FloatArray:
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(self._held(self.deviations(X)).max(axis=1, initial=0.0), dtype=np.float64)

    def learn_many(self, X: FloatArray) -> None:
        self._remember(self.deviations(X))

    def _remember(self, Z: FloatArray) -> None:
        if len(self.history):
            d = Z.shape[1]
            hist = np.pad(self.history, ((0, 0), (0, d - self.history.shape[1])))
            self.history = np.vstack([hist, Z])[-len(self.history) :]

    def process_many(self, X: FloatArray) -> FloatArray:
        """The causal loop in one vectorised pass: row i's run includes the rows of ``X`` before it."""
        if len(X) == 0:
            return np.zeros(0)
        Z = self.deviations(X)
        held = self._persistent(Z, self.history)
        self._remember(Z)
        return np.asarray(held.max(axis=1, initial=0.0), dtype=np.float64)

    def explain(self, x: Mapping[str, float]) -> dict[str, Any]:
        """The member a score of ``x`` is about: label, deviation and the group median."""
        row = np.array([[x.get(f, np.nan) for f in self.features]])
        if not self.features:
            return {}
        held = self._held(self.deviations(row))[0]
        j = int(np.argmax(held))
        med = float(np.nanmedian(row)) if np.isfinite(row).any() else float("nan")
        return {self.member: self.features[j], "deviation": round(float(held[j]), 3), "peer_median": med}

    def state(self) -> dict[str, Any]:
        return {"history": pack(self.history)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.history = unpack(state["history"])


class RankPeerDetector(PeerDetector):
    """Step (or compute) time of each rank of a job against the other ranks: names the straggler."""

    name = "peer_rank"
    member = "rank"
    two_sided = False

    def __init__(self, features: Sequence[str] = (), *, persist: int = 3, rel_floor: float = 0.05, **kw: Any) -> None:
        super().__init__(features, persist=persist, rel_floor=rel_floor, **kw)
