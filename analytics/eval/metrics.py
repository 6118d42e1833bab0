"""Scores for time-series anomaly detection, honest ones first (DESIGN §9).

``labels`` and ``pred`` are boolean arrays over the same time axis; a labelled *segment* (an event)
is a maximal run of ``True`` labels, an *alarm* a maximal run of ``True`` predictions.

- :func:`prf`: point-wise precision/recall/F1, no adjustment: the figure we report.
- :func:`adjust` (PA%K, Kim et al., AAAI 2022, "Towards a rigorous evaluation of time-series anomaly
  detection"): a segment whose share of detected points *exceeds* K% is marked detected in full.
  K=0 is the classic point adjustment (one hit anywhere is enough), K=100 leaves predictions as
  they are. :func:`pak_auc` is the area under F1-PA%K over K = 0, 10, ..., 100, divided by 100
  (the paper's summary figure); we also report K=20.
- :func:`event_recall`, :func:`false_alarms_per_day`, :func:`median_delay_minutes`: what an
  operator sees: incidents caught, pages with no incident, minutes to the first page.
- :func:`auprc`: threshold-free ranking quality (average precision).
- :func:`best_f1`: the oracle threshold read off the test labels; only for the cheating baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_recall_curve

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PAK_KS = np.arange(0, 101, 10)


@dataclass(frozen=True, slots=True)
class PRF:
    precision: float
    recall: float
    f1: float


def segments(mask: BoolArray) -> IntArray:
    """Maximal runs of ``True`` as rows ``[start, stop)``."""
    edges = np.diff(np.concatenate(([0], np.asarray(mask, dtype=np.int8), [0])))
    return np.stack((np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)), axis=1).astype(np.int64)


def _hits(segs: IntArray, pred: BoolArray) -> IntArray:
    """Number of predicted points inside each segment."""
    cum = np.concatenate(([0], np.cumsum(pred, dtype=np.int64)))
    return cum[segs[:, 1]] - cum[segs[:, 0]]


def prf(labels: BoolArray, pred: BoolArray) -> PRF:
    tp = int(np.count_nonzero(labels & pred))
    n_pred, n_true = int(np.count_nonzero(pred)), int(np.count_nonzero(labels))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1)


def adjust(labels: BoolArray, pred: BoolArray, k_percent: float = 0.0) -> BoolArray:
    """PA%K: fill every labelled segment whose detected share exceeds ``k_percent``."""
    segs = segments(labels)
    lengths = segs[:, 1] - segs[:, 0]
    filled = segs[_hits(segs, pred) > k_percent / 100.0 * lengths]
    out = pred.copy()
    for start, stop in filled:
        out[start:stop] = True
    return out


def pa_f1(labels: BoolArray, pred: BoolArray) -> float:
    return prf(labels, adjust(labels, pred, 0.0)).f1


def pak_f1(labels: BoolArray, pred: BoolArray, k_percent: float) -> float:
    return prf(labels, adjust(labels, pred, k_percent)).f1


def pak_auc(labels: BoolArray, pred: BoolArray) -> float:
    f1s = np.array([pak_f1(labels, pred, float(k)) for k in PAK_KS])
    return float(np.trapezoid(f1s, PAK_KS) / 100.0)


def event_recall(labels: BoolArray, pred: BoolArray) -> float:
    """Share of labelled segments with at least one detected point (NaN without segments)."""
    segs = segments(labels)
    return float(np.mean(_hits(segs, pred) > 0)) if len(segs) else float("nan")


def false_alarms_per_day(labels: BoolArray, pred: BoolArray, interval_s: float) -> float:
    """Alarm runs that touch no labelled point, per day of data."""
    alarms = segments(pred)
    false = int(np.count_nonzero(_hits(alarms, labels) == 0))
    days = len(labels) * interval_s / 86400.0
    return false / days


def detection_delays(labels: BoolArray, pred: BoolArray) -> IntArray:
    """Samples from each detected segment's start to its first detected point."""
    delays = [int(np.argmax(pred[start:stop])) for start, stop in segments(labels) if pred[start:stop].any()]
    return np.array(delays, dtype=np.int64)


def median_delay_minutes(labels: BoolArray, pred: BoolArray, interval_s: float) -> float:
    delays = detection_delays(labels, pred)
    return float(np.median(delays) * interval_s / 60.0) if len(delays) else float("nan")


def auprc(labels: BoolArray, scores: FloatArray) -> float:
    if not labels.any():
        return float("nan")
    return float(average_precision_score(labels, scores))


def best_f1(labels: BoolArray, scores: FloatArray) -> tuple[float, float]:
    """The best point-wise F1 over all thresholds on these labels, and that threshold (``score >= t``)."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])
