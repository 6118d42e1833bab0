"""Each metric on tiny series whose answers were worked out by hand (in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vigil.analytics.eval import metrics

# index:         0  1  2  3  4  5  6  7  8  9
LABELS = np.array([0, 1, 1, 1, 1, 0, 0, 1, 1, 0], dtype=bool)  # events [1,5) and [7,9)
PRED = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0], dtype=bool)  # alarms [0,1), [2,3), [6,7)


def test_segments_are_half_open_runs() -> None:
    assert metrics.segments(LABELS).tolist() == [[1, 5], [7, 9]]
    assert metrics.segments(np.ones(3, dtype=bool)).tolist() == [[0, 3]]
    assert metrics.segments(np.zeros(3, dtype=bool)).shape == (0, 2)


def test_pointwise_prf_without_adjustment() -> None:
    # one true positive (index 2) of 3 predictions and 6 labelled points
    got = metrics.prf(LABELS, PRED)
    assert got.precision == pytest.approx(1 / 3)
    assert got.recall == pytest.approx(1 / 6)
    assert got.f1 == pytest.approx(2 / 9)


def test_prf_of_nothing_predicted_is_zero_not_nan() -> None:
    got = metrics.prf(LABELS, np.zeros(10, dtype=bool))
    assert (got.precision, got.recall, got.f1) == (0.0, 0.0, 0.0)


def test_point_adjustment_fills_a_touched_event() -> None:
    # event [1,5) is touched, so 0..4 and 6 are predicted: 4 true of 6 predicted, 4 of 6 labelled
    assert metrics.adjust(LABELS, PRED, 0.0).nonzero()[0].tolist() == [0, 1, 2, 3, 4, 6]
    assert metrics.pa_f1(LABELS, PRED) == pytest.approx(2 / 3)


def test_pak_needs_more_than_k_percent_of_the_event() -> None:
    # 1 hit of 4 points = 25%: filled for K=20, not for K=30 (back to the plain 2/9)
    assert metrics.pak_f1(LABELS, PRED, 20) == pytest.approx(2 / 3)
    assert metrics.pak_f1(LABELS, PRED, 30) == pytest.approx(2 / 9)
    # exactly K% does not exceed K%: 1 hit of 5 points at K=20 stays unfilled
    labels = np.array([1, 1, 1, 1, 1, 0], dtype=bool)
    pred = np.array([1, 0, 0, 0, 0, 0], dtype=bool)
    assert metrics.adjust(labels, pred, 20).tolist() == pred.tolist()
    assert metrics.adjust(labels, pred, 19.9).sum() == 5


def test_pak_auc_is_the_area_over_k() -> None:
    # F1 = 2/3 for K in {0,10,20}, 2/9 for K >= 30; trapezoids: 2*10*2/3 + 10*(2/3+2/9)/2 + 70*2/9 = 300/9
    assert metrics.pak_auc(LABELS, PRED) == pytest.approx(1 / 3)


def test_event_recall_counts_events_with_one_hit() -> None:
    assert metrics.event_recall(LABELS, PRED) == pytest.approx(0.5)
    assert math.isnan(metrics.event_recall(np.zeros(4, dtype=bool), np.ones(4, dtype=bool)))


def test_false_alarms_per_day_counts_alarm_runs_touching_no_event() -> None:
    # alarms at 0 and 6 touch no labelled point; ten samples of 8640 s are one day
    assert metrics.false_alarms_per_day(LABELS, PRED, 8640.0) == pytest.approx(2.0)
    # an alarm run that overlaps an event by one point is not false, however long
    pred = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    assert metrics.false_alarms_per_day(LABELS, pred, 8640.0) == 0.0


def test_delay_is_from_event_start_to_first_hit() -> None:
    # event [1,5) first hit at 2: one sample; event [7,9) missed
    assert metrics.detection_delays(LABELS, PRED).tolist() == [1]
    assert metrics.median_delay_minutes(LABELS, PRED, 300.0) == pytest.approx(5.0)
    pred = PRED.copy()
    pred[8] = True  # second event hit at its second point: delays 1 and 1
    assert metrics.median_delay_minutes(LABELS, pred, 60.0) == pytest.approx(1.0)
    assert math.isnan(metrics.median_delay_minutes(LABELS, np.zeros(10, dtype=bool), 60.0))


def test_auprc_is_average_precision() -> None:
    # ranked: 0.9 (pos: P=1, R=1/2), 0.8 (neg), 0.2 (pos: P=2/3, R=1): AP = 1/2*1 + 1/2*2/3
    labels = np.array([0, 1, 0, 1], dtype=bool)
    scores = np.array([0.1, 0.9, 0.8, 0.2])
    assert metrics.auprc(labels, scores) == pytest.approx(5 / 6)


def test_best_f1_is_the_oracle_threshold() -> None:
    # t=0.9: F1 2/3; t=0.8: 1/2; t=0.2: P=2/3, R=1, F1=0.8; t=0.1: 2/3
    labels = np.array([0, 1, 0, 1], dtype=bool)
    f1, threshold = metrics.best_f1(labels, np.array([0.1, 0.9, 0.8, 0.2]))
    assert f1 == pytest.approx(0.8)
    assert threshold == pytest.approx(0.2)


# The alarm budget, on a day of 24 hourly samples: events [5,8) and [15,17); merge 1 sample, repeat 4 samples.
DAY = np.zeros(24, dtype=bool)
DAY[5:8] = True
DAY[15:17] = True
HOUR = 3600.0


def test_alarms_next_to_an_event_belong_to_it() -> None:
    # widened by 1: [4,9) and [14,18); alarms at 4 (just before) and 8 (just after) are not false
    assert metrics.near_events(DAY, 1).nonzero()[0].tolist() == [4, 5, 6, 7, 8, 14, 15, 16, 17]
    alarms = np.zeros(24, dtype=bool)
    alarms[[4, 8, 11, 12, 20]] = True  # 11,12 one episode; 20 another: two false alarms
    assert metrics.false_alarms(DAY, alarms, merge=1, repeat=4) == 2


def test_an_alarm_that_never_stops_pages_again_every_repeat() -> None:
    # everything alarms: outside the widened events are [0,4) (1 page), [9,14) (5 samples: 2 pages) and
    # [18,24) (6 samples: 2 pages); the merge gap of 1 does not join them across the events
    assert metrics.false_alarms(DAY, np.ones(24, dtype=bool), merge=1, repeat=4) == 5


def test_at_budget_keeps_a_threshold_that_meets_the_budget() -> None:
    # margins: the two events score 1 and 2 above the threshold; one false spike at 20 scores 0.5 above
    margins = np.full(24, -1.0)
    margins[6], margins[16], margins[20] = 1.0, 2.0, 0.5
    got = metrics.at_budget(DAY, margins, HOUR, per_day=1.0, merge=1, repeat=4)
    assert (got.event_recall, got.margin, got.false_per_day) == (1.0, 0.0, 1.0)
    assert got.median_delay_samples == 1.0  # both events first alarm one sample after their start


def test_at_budget_raises_an_over_alarming_threshold_just_enough() -> None:
    # two false spikes (0.5 and 1.5 above) are two false alarms in one day: over the budget of one. Raising
    # the threshold past 0.5 drops one spike and the event at 1.0 stays detected; past 1.0 is never needed
    margins = np.full(24, -1.0)
    margins[6], margins[16], margins[20], margins[11] = 1.0, 2.0, 0.5, 1.5
    got = metrics.at_budget(DAY, margins, HOUR, per_day=1.0, merge=1, repeat=4)
    assert got.margin == 0.5 and got.event_recall == 1.0 and got.false_per_day == 1.0
    # with a budget of none the first margin without false alarms is 1.5: only the event at 2.0 survives
    strict = metrics.at_budget(DAY, margins, HOUR, per_day=0.0, merge=1, repeat=4)
    assert (strict.margin, strict.event_recall) == (1.5, 0.5)


def test_at_budget_never_lowers_the_detectors_threshold_unless_told() -> None:
    margins = np.full(24, -1.0)
    margins[6] = -0.5  # the event scores below the threshold: missed, and no false alarm either
    assert metrics.at_budget(DAY, margins, HOUR, 1.0, 1, 4).event_recall == 0.0
    # lowest=-inf places the threshold by the labels: just below -0.5 every sample at -1 stays quiet
    assert metrics.at_budget(DAY, margins, HOUR, 1.0, 1, 4, lowest=-np.inf).event_recall == 0.5
