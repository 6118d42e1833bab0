"""The Numenta Anomaly Benchmark's scoring rules, written from NAB's description and checked against
its published results (tests/contract/test_nab_scoring.py).

Rules (NAB v1.1, ``nab/sweeper.py`` and the whitepaper "Evaluating Real-time Anomaly Detection
Algorithms - the Numenta Anomaly Benchmark"):

* A record is *detected* when its anomaly score is ``>= threshold``.
* The first ``min(floor(0.15 n), 750)`` records of a file (the probationary period) are not scored;
  a window lying wholly inside it would not be either (as in NAB's sweeper; no NAB window does).
* Each labelled window scores once: the earliest detected record ``i`` in window ``[a, b]`` earns
  ``tp * sig(-(b - i + 1) / (b - a + 1)) / sig(-1)`` (1.0 at the window's left edge, falling towards 0
  at its right edge); a window without a detection costs ``-fn``. Later detections in the same
  window count for nothing (neither reward nor penalty).
* A detected record outside every window costs ``fp * sig((i - b') / (w' - 1))`` where ``b'`` and
  ``w'`` are the right edge and width of the closest preceding window (so a detection just after a
  window is penalised less), or ``-fp`` when no window precedes it.
* ``sig(x) = 2 / (1 + exp(5 x)) - 1`` for ``x < 3`` and ``-1`` beyond (the "scaled sigmoid").
* Normalised score = ``100 (raw - null) / (perfect - null)`` where the null detector detects nothing
  (``-fn`` per window) and the perfect one detects every window at its left edge (``tp`` per window).
* NAB's threshold optimisation: one threshold per detector and profile, the one that maximises the
  raw score summed over the whole corpus (every distinct anomaly score is a candidate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750  # 0.15 * 5000: NAB caps the probationary period at 750 records


@dataclass(frozen=True, slots=True)
class Profile:
    """A row of NAB's ``config/profiles.json`` cost matrix."""

    name: str
    tp: float
    fp: float
    fn: float


# NAB's config/profiles.json (the loader reads the file when it is there and checks it agrees).
PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


def probationary_length(n: int) -> int:
    return int(min(np.floor(PROBATION_FRACTION * n), PROBATION_CAP))


def scaled_sigmoid(position: FloatArray) -> FloatArray:
    """NAB's weight of a detection at a relative position (-1 window start, 0 window end, >0 after)."""
    pos = np.asarray(position, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0
    return np.where(pos >= 3.0, -1.0, out)


MAX_TP = float(scaled_sigmoid(np.array(-1.0)))


@dataclass(frozen=True, slots=True)
class FileLayout:
    """Where each record of one file sits relative to its windows, independent of any detector.

    ``window_id`` is the index into ``windows`` of the record's window, or -1 outside all windows.
    ``tp_unit`` is the reward (before the profile's tp weight) of a first detection at that record,
    ``fp_unit`` the (negative) penalty before the fp weight of a detection there; each is 0 where
    the other applies. ``scorable`` is False in the probationary period.
    """

    n: int
    windows: tuple[tuple[int, int], ...]
    probation: int
    window_id: IntArray
    tp_unit: FloatArray
    fp_unit: FloatArray

    @property
    def scorable(self) -> BoolArray:
        return np.arange(self.n) >= self.probation

    @property
    def scored_windows(self) -> list[int]:
        """Windows with at least one scorable record (NAB drops those wholly in probation)."""
        return [j for j, (_, b) in enumerate(self.windows) if b >= self.probation]


def layout(n: int, windows: Sequence[tuple[int, int]]) -> FileLayout:
    """The per-record weights of a file with ``n`` records and inclusive index ``windows``."""
    wins = tuple(sorted((int(a), int(b)) for a, b in windows))
    for k, (a, b) in enumerate(wins):
        if not 0 <= a <= b < n:
            raise ValueError(f"window [{a}, {b}] outside a file of {n} records")
        if k + 1 < len(wins) and wins[k + 1][0] <= b:
            raise ValueError(f"windows [{a}, {b}] and {list(wins[k + 1])} overlap")
    idx = np.arange(n)
    window_id = np.full(n, -1, dtype=np.int64)
    tp_unit = np.zeros(n)
    fp_unit = np.full(n, -1.0)  # before the first window: the full penalty
    for j, (a, b) in enumerate(wins):
        width = b - a + 1
        inside = slice(a, b + 1)
        window_id[inside] = j
        tp_unit[inside] = scaled_sigmoid(-(b - idx[inside] + 1) / width) / MAX_TP
        fp_unit[inside] = 0.0
        end = wins[j + 1][0] if j + 1 < len(wins) else n
        after = slice(b + 1, end)
        # Distance past the window in units of its width; a one-record window counts as past at once.
        span = max(width - 1, 1)
        fp_unit[after] = scaled_sigmoid((idx[after] - b) / span)
    return FileLayout(n, wins, probationary_length(n), window_id, tp_unit, fp_unit)


@dataclass(frozen=True, slots=True)
class FileScore:
    score: float
    tp: int  # detected records inside windows (NAB counts records, not windows)
    tn: int
    fp: int
    fn: int
    windows_detected: int


def score_file(lay: FileLayout, scores: FloatArray, threshold: float, profile: Profile) -> FileScore:
    """NAB's raw score of one file for the detections ``scores >= threshold``."""
    detected = (np.asarray(scores) >= threshold) & lay.scorable
    inside = lay.window_id >= 0
    total = float(profile.fp * lay.fp_unit[detected & ~inside].sum())
    found = 0
    for j in lay.scored_windows:
        hits = np.flatnonzero(detected & (lay.window_id == j))
        if hits.size:
            found += 1
            total += profile.tp * float(lay.tp_unit[hits[0]])
        else:
            total -= profile.fn
    scorable = lay.scorable
    return FileScore(
        score=total,
        tp=int((detected & inside).sum()),
        tn=int((~detected & ~inside & scorable).sum()),
        fp=int((detected & ~inside).sum()),
        fn=int((~detected & inside & scorable).sum()),
        windows_detected=found,
    )


def record_scores(lay: FileLayout, scores: FloatArray, threshold: float, profile: Profile) -> FloatArray:
    """The per-record ``S(t)_<profile>`` column of NAB's results files.

    Each window's outcome (reward of its first detection, or ``-fn``) is written on the window's
    first record; each false positive's penalty on its own record; everything else is 0.
    """
    detected = (np.asarray(scores) >= threshold) & lay.scorable
    out = np.zeros(lay.n)
    false_pos = detected & (lay.window_id < 0)
    out[false_pos] = profile.fp * lay.fp_unit[false_pos]
    for j in lay.scored_windows:
        a = lay.windows[j][0]
        hits = np.flatnonzero(detected & (lay.window_id == j))
        out[a] = profile.tp * lay.tp_unit[hits[0]] if hits.size else -profile.fn
    return out


def null_score(layouts: Sequence[FileLayout], profile: Profile) -> float:
    return -profile.fn * sum(len(lay.scored_windows) for lay in layouts)


def perfect_score(layouts: Sequence[FileLayout], profile: Profile) -> float:
    # NAB normalises by tp weight times the number of labelled windows.
    return profile.tp * sum(len(lay.windows) for lay in layouts)


def normalise(raw: float, null: float, perfect: float) -> float:
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True, slots=True)
class Sweep:
    """Corpus raw score for every candidate threshold, highest threshold first.

    ``thresholds[k]`` detects the records whose score is ``>= thresholds[k]``; the first entry
    (``+inf``) detects nothing and scores the null detector.
    """

    thresholds: FloatArray
    raw: FloatArray

    def best(self) -> tuple[float, float]:
        """The threshold with the highest raw score; ties go to the highest threshold, as in NAB."""
        k = int(np.argmax(self.raw))  # argmax returns the first maximum: the highest threshold
        return float(self.thresholds[k]), float(self.raw[k])

    def at(self, threshold: float) -> float:
        """The raw score of detecting ``scores >= threshold``."""
        k = int(np.searchsorted(-self.thresholds, -threshold, side="right")) - 1
        return float(self.raw[max(k, 0)])


def sweep(layouts: Sequence[FileLayout], scores: Sequence[FloatArray], profile: Profile) -> Sweep:
    """The raw corpus score at every threshold, in one pass over the records sorted by score.

    Lowering the threshold past a record adds its false-positive penalty, or, inside a window,
    raises that window's outcome to the best reward among its detected records (from ``-fn``).
    Records tied on score enter together, so candidate thresholds are the distinct scores.
    """
    if len(layouts) != len(scores):
        raise ValueError(f"{len(layouts)} files but {len(scores)} score arrays")
    s_parts, w_parts, win_parts = [], [], []
    offset = 0
    for lay, sc in zip(layouts, scores, strict=True):
        sc = np.asarray(sc, dtype=np.float64)
        if sc.shape != (lay.n,):
            raise ValueError(f"expected {lay.n} scores, got shape {sc.shape}")
        if not np.all(np.isfinite(sc)):
            raise ValueError("anomaly scores must be finite")
        keep = lay.scorable
        wid = lay.window_id[keep]
        s_parts.append(sc[keep])
        w_parts.append(np.where(wid >= 0, profile.tp * lay.tp_unit[keep], profile.fp * lay.fp_unit[keep]))
        win_parts.append(np.where(wid >= 0, wid + offset, -1))
        offset += len(lay.windows)
    s = np.concatenate(s_parts) if s_parts else np.empty(0)
    weight = np.concatenate(w_parts) if w_parts else np.empty(0)
    win = np.concatenate(win_parts) if win_parts else np.empty(0, dtype=np.int64)
    order = np.argsort(-s, kind="stable")
    s, weight, win = s[order], weight[order], win[order]

    delta = np.where(win < 0, weight, 0.0)  # false positives add their penalty as they enter
    # Windows: the outcome is the running maximum of the rewards entered so far, starting at -fn;
    # each rise of that maximum is a score change at the record that caused it.
    in_win = np.flatnonzero(win >= 0)
    if in_win.size:
        by_window = in_win[np.argsort(win[in_win], kind="stable")]  # grouped by window, score order kept
        wids = win[by_window]
        starts = np.flatnonzero(np.r_[True, wids[1:] != wids[:-1]])
        for lo, hi in zip(starts, [*starts[1:], by_window.size], strict=True):
            pos = by_window[lo:hi]
            best = np.maximum.accumulate(np.maximum(weight[pos], -profile.fn))
            delta[pos] += np.diff(np.r_[-profile.fn, best])
    null = null_score(layouts, profile)
    running = null + np.cumsum(delta)
    last_of_tie = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if s.size else np.empty(0, dtype=np.int64)
    return Sweep(np.r_[np.inf, s[last_of_tie]], np.r_[null, running[last_of_tie]])
