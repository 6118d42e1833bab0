"""Scores for time-series anomaly detection, honest ones first (no point adjustment unless named).

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
- :func:`at_budget`: the operational figure: event recall and median delay at an alarm budget of at
  most ``per_day`` false alarm *episodes* per day (alarms at most ``merge`` samples apart are one
  episode, :func:`~vigil.analytics.models.calibrate.episodes`; an episode is false when its span
  from first to last alarm holds no labelled point). The detector's own (train-only) threshold is
  kept where it meets the budget on the test data and raised just enough where it does not, as an
  operator would after a day of pages; it is never lowered, so a detector gains nothing from the
  labels it did not already earn.
- :func:`auprc`: threshold-free ranking quality (average precision).
- :func:`best_f1`: the oracle threshold read off the test labels; only for the cheating baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_recall_curve
from vigil.analytics.models.calibrate import DAY_S, pages

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PAK_KS = np.arange(0, 101, 10)
# The operational figure's definitions (:func:`at_budget`): at most one false alarm per entity per day; alarms
# at most 10 minutes apart are one page; a page left open is sent again every 4 hours (Alertmanager's default
# repeat_interval).
BUDGET_PER_DAY = 1.0
MERGE_S = 600.0
REPEAT_S = 14400.0


def samples(seconds: float, interval_s: float) -> int:
    """Whole samples of ``interval_s`` in ``seconds`` (at least 1)."""
    return max(1, int(seconds // interval_s))


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


def near_events(labels: BoolArray, merge: int) -> BoolArray:
    """Samples within ``merge`` samples of a labelled event (the event itself included)."""
    segs, edges = segments(labels), np.zeros(len(labels) + 1, dtype=np.int64)
    np.add.at(edges, np.maximum(segs[:, 0] - merge, 0), 1)  # +1 where a widened event starts, -1 where it ends
    np.add.at(edges, np.minimum(segs[:, 1] + merge, len(labels)), -1)
    near: BoolArray = np.cumsum(edges[:-1]) > 0
    return near


def false_alarms(labels: BoolArray, alarms: BoolArray, merge: int, repeat: int) -> int:
    """Pages about no labelled event, as a pager would send them.

    Alarms within ``merge`` samples of a labelled event (before its start or after its end) belong
    to it; the others are merged into episodes (alarms at most ``merge`` samples apart), and an
    episode counts one false alarm per ``repeat`` samples it stays open (Alertmanager re-notifies a
    firing alert every ``repeat_interval``), so alarming all the time is not one false alarm.
    """
    return pages(np.asarray(alarms, dtype=bool) & ~near_events(labels, merge), merge, repeat)


@dataclass(frozen=True, slots=True)
class AtBudget:
    event_recall: float  # NaN without labelled events
    median_delay_samples: float  # NaN when no event is detected
    false_per_day: float  # false alarms per day at the margin used
    margin: float  # how far the threshold was raised (0: the detector's own threshold met the budget)


def at_budget(labels: BoolArray, margins: FloatArray, interval_s: float, per_day: float, merge: int, repeat: int,
              lowest: float = 0.0, step: int = 64) -> AtBudget:  # fmt: skip
    """Event recall and median delay of the alarms ``margins > m`` for the lowest ``m >= lowest`` that sends
    at most ``per_day`` false alarms per day (:func:`false_alarms`).

    ``margins`` is each sample's score minus the threshold it was judged against (positive: an
    alarm), so a threshold that moves over time is raised by the same amount everywhere.
    ``lowest=0`` keeps the detector's threshold where it meets the budget; ``lowest=-inf`` places
    the threshold by the labels alone (a ranking figure, not a calibration one). The margins tried
    are ``lowest`` and the distinct margins above it, coarse to fine: ``step`` of them evenly
    spaced in rank, then up to ``step`` between the last one that failed and the first that met
    the budget (every one of them when there are at most ``step``).
    """
    margins = np.asarray(margins, dtype=np.float64)
    allowed = per_day * len(labels) * interval_s / DAY_S
    outside = ~near_events(labels, merge)

    def meets(m: float) -> bool:
        return pages((margins > m) & outside, merge, repeat) <= allowed

    chosen = _first(meets, lowest, np.unique(margins[margins > lowest]), step)
    alarms = margins > chosen
    delays = detection_delays(labels, alarms)
    return AtBudget(
        event_recall(labels, alarms),
        float(np.median(delays)) if len(delays) else float("nan"),
        pages(alarms & outside, merge, repeat) * DAY_S / (len(labels) * interval_s) if len(labels) else 0.0,
        chosen,
    )


def _spaced(values: FloatArray, count: int) -> FloatArray:
    if len(values) <= count:
        return values
    picked: FloatArray = values[np.linspace(0, len(values) - 1, count).round().astype(np.int64)]
    return picked


def _first(meets: Callable[[float], bool], lowest: float, above: FloatArray, step: int) -> float:
    """The first of ``lowest`` and the sorted ``above`` that meets, coarse to fine; past them all, nothing alarms."""
    if np.isfinite(lowest) and meets(lowest):
        return lowest
    previous = lowest
    for m in _spaced(above, step):
        if meets(float(m)):
            between = above[(above > previous) & (above < m)]
            return next((float(f) for f in _spaced(between, step) if meets(float(f))), float(m))
        previous = float(m)
    return float(above[-1]) if len(above) else lowest


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
