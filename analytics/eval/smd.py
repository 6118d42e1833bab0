"""SMD and ASD: our detectors with train-only thresholds against PCA with an oracle threshold.

Two detectors, each run as its own protocol says (:meth:`Variant.describe`, :meth:`Adaptive.describe`):
``mspc``, frozen after train, and ``adaptive_mspc``, which goes on learning online over test without
labels. The default is the one the train-only study (:mod:`smd_dev`) prefers.

Data: ``<name>_train.npy``, ``<name>_test.npy`` (time x metrics, float) and ``<name>_test_label.npy``
(0/1 per test row) per machine, as in OmniAnomaly's SMD (``machine-*``, 1-minute samples) and
InterFusion's ASD (``omi-*``, 5-minute samples). Every figure comes from one run of :func:`evaluate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from vigil.analytics.eval import baselines, metrics
from vigil.analytics.eval.metrics import BoolArray, FloatArray
from vigil.analytics.models.adaptive_mspc import AdaptiveMSPC
from vigil.analytics.models.mspc import MSPCDetector

from vigil.errors import VigilError

SMD_INTERVAL_S = 60.0  # OmniAnomaly: one sample a minute
ASD_INTERVAL_S = 300.0  # InterFusion: one sample every five minutes
VALIDATION_FRACTION = 0.2  # the end of train, held out to set the threshold
THRESHOLD_QUANTILE = 0.99  # alarm budget: 1% of held-out samples (chosen by the train-only study, smd_dev)
SMOOTH_WINDOW = 5  # samples in the trailing mean of the score
RANDOM_SEED = 0
PAK_K = 20.0

MSPC_PROTOCOL = (
    "Detector: mspc (PCA T² + Q, subspace keeping 90% of range-scaled variance, no lags, no day-median "
    "normalisation), chosen among 12 variants by a train-only study (synthetic incidents in the last 20% of "
    "train, best mean F1; `vigil eval smd-dev`), run on test twice (the a-priori quantile 0.995, then this one). "
    f"Threshold: the model is fit on the first {1 - VALIDATION_FRACTION:.0%} of train, scores the last "
    f"{VALIDATION_FRACTION:.0%} of train, and the threshold is the {{quantile}} quantile of those held-out "
    f"scores (after the same {SMOOTH_WINDOW}-sample trailing mean); the model is then refit on all of train and "
    "scores test frozen, each test score from its own row and the previous ones only (causal), alarm = score > "
    "threshold. "
)
ADAPTIVE_PROTOCOL = (
    "Detector: adaptive_mspc, variant 3 (online, score then learn, chunks of 32 rows each scored with the state "
    "before it: per-metric EW mean with winsorised updates, half-life {half_life_days:g} day; per-metric EW "
    "variance and EW covariance of the normalised metrics, half-life {memory_days:g} days, giving T² + Q; rows "
    "whose 5-row mean score exceeds a gate of {gate:g} are not learnt; once {accept_after_hours:g} h of the last "
    "{window_hours:g} h were above the gate the change is accepted as the new normal and the metrics that moved "
    "jump to a fast mean). Variant 3 was designed after seeing that frozen models fail under unlabelled regime "
    "changes on test; its hyper-parameters were chosen on train-only dev data. The two frozen MSPC variants had "
    "been run on test before it (machine-1-6 enters an unlabelled new operating level there); this is the third "
    "test run. The dev data (`vigil eval smd-dev`, study 2b): synthetic incidents, slow drifts and unlabelled "
    "persistent level shifts in the last 20% of train; a grid fixed in advance, run on the model's second "
    "version (the first, with robust one-day spreads, lost on dev); best mean dev F1 among it and mspc (0.368 "
    "against 0.360). Threshold: the same online procedure runs over all of train from scratch (adapting there "
    f"too); the threshold is the {{quantile}} quantile of its scores on the last {VALIDATION_FRACTION:.0%} of "
    f"train (after the same {SMOOTH_WINDOW}-sample trailing mean); it then goes on over test without a restart, "
    "each test score from its own row and the previous ones only (causal), alarm = score > threshold. "
)
COMMON_PROTOCOL = (
    "No test label or test statistic is used by the detector. F1/precision/recall are point-wise "
    f"without point adjustment; pa_f1 is point-adjusted; pak_f1 is PA%K at K={PAK_K:g} and pak_auc the area under "
    "F1-PA%K over K=0..100 (Kim et al. 2022); event_recall: labelled segments with >= 1 alarm; "
    "false_alarms_per_day: alarm runs touching no labelled point per day of test; median_delay_min: segment "
    "start to first alarm; auprc: average precision of the score; oracle_threshold_f1: this score's best F1 "
    "on the test labels, a diagnostic of what the honest threshold costs. Baselines in the same run: random "
    f"(uniform scores, seed {RANDOM_SEED}, threshold 0.5: coin flips); pca_oracle (QuoVadisTAD protocol: "
    "PCA(10) fit on train, "
    "per-feature error normalised with test statistics, centred smoothing, best F1 over thresholds and "
    "normalisations on the test labels); pca_plain_oracle (L2 reconstruction error, best-F1 threshold)."
)


class DatasetError(VigilError):
    """The benchmark files are missing or malformed."""


@dataclass(frozen=True, slots=True)
class Machine:
    name: str
    train: FloatArray
    test: FloatArray
    labels: BoolArray
    interval_s: float


@dataclass(frozen=True, slots=True)
class MachineResult:
    machine: Machine
    scores: FloatArray
    threshold: float
    oracle: baselines.OracleResult
    figures: dict[str, float]


def machine_names(data_dir: Path) -> list[str]:
    """Every machine with its three files present, SMD first."""
    names = [p.name.removesuffix("_train.npy") for p in data_dir.glob("*_train.npy")]
    complete = [n for n in names if all((data_dir / f"{n}{end}").exists() for end in ("_test.npy", "_test_label.npy"))]
    return sorted(complete, key=lambda n: (not n.startswith("machine-"), n))


def _load(path: Path) -> FloatArray:
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        loaded: FloatArray = np.load(path, allow_pickle=False).astype(np.float64)
    except ValueError as exc:
        raise DatasetError(f"{path}: not a numeric .npy array ({exc})") from exc
    return loaded


def load_machine(data_dir: Path, name: str, limit: int | None = None) -> Machine:
    """One machine's train, test and labels; ``limit`` keeps the first rows of each (for smoke tests)."""
    train, test = _load(data_dir / f"{name}_train.npy"), _load(data_dir / f"{name}_test.npy")
    labels = _load(data_dir / f"{name}_test_label.npy")
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise DatasetError(f"{name}: train {train.shape} and test {test.shape} must be 2-D with the same metrics")
    if labels.shape != (len(test),):
        raise DatasetError(f"{name}: {labels.shape[0]} labels for {len(test)} test rows")
    if not (np.isfinite(train).all() and np.isfinite(test).all()):
        raise DatasetError(f"{name}: non-finite values in train or test")
    interval = SMD_INTERVAL_S if name.startswith("machine-") else ASD_INTERVAL_S
    return Machine(name, train[:limit], test[:limit], labels[:limit] > 0.5, interval)


def causal_mean(x: FloatArray, window: int) -> FloatArray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start): uses no future sample."""
    cum = np.concatenate(([0.0], np.cumsum(x)))
    stop = np.arange(1, len(x) + 1)
    start = np.maximum(stop - window, 0)
    result: FloatArray = (cum[stop] - cum[start]) / (stop - start)
    return result


@dataclass(frozen=True, slots=True)
class Variant:
    """How the frozen MSPC score is made; every choice here is fixed before the test split is read."""

    lags: int = 0  # dynamic PCA: each row joined with this many previous rows
    relative: bool = False  # divide each score by the median score of the day before it
    quantile: float = THRESHOLD_QUANTILE  # of held-out train scores: the alarm threshold

    detector = "mspc"

    def scored(self, train: FloatArray, target: FloatArray, interval_s: float) -> tuple[FloatArray, FloatArray]:
        """Held-out scores of the end of train (model fit on its start), and ``target``'s (model fit on all)."""
        split = int(len(train) * (1 - VALIDATION_FRACTION))
        return _scored(train[:split], train[split:], self, interval_s), _scored(train, target, self, interval_s)

    def describe(self) -> str:
        return MSPC_PROTOCOL.format(quantile=self.quantile)


@dataclass(frozen=True, slots=True)
class Adaptive:
    """How the adaptive MSPC is run; durations are turned into rows with the machine's sample interval."""

    half_life_days: float = 0.5  # of the per-metric mean
    accept_after_hours: float = 6.0  # a change above the gate for this long is a new normal
    gate: float = 30.0  # smoothed score above which a row is not learnt
    quantile: float = THRESHOLD_QUANTILE  # of the scores on the end of train: the alarm threshold
    memory_days: float = 30.0  # half-life of the per-metric spread and of the covariance

    detector = "adaptive_mspc"

    def model(self, n_features: int, interval_s: float) -> AdaptiveMSPC:
        return AdaptiveMSPC(
            [f"metric_{i}" for i in range(n_features)],
            half_life=self.half_life_days * 86400.0 / interval_s,
            memory=self.memory_days * 86400.0 / interval_s,
            accept_after=max(1, round(self.accept_after_hours * 3600.0 / interval_s)),
            gate=self.gate,
        )

    def scored(self, train: FloatArray, target: FloatArray, interval_s: float) -> tuple[FloatArray, FloatArray]:
        """One online run over train then ``target``: the smoothed scores of the end of train, and of ``target``."""
        model = self.model(train.shape[1], interval_s)
        with threadpool_limits(limits=1, user_api="blas"):  # d x d eigen-solves: more threads only contend
            raw = np.concatenate((model.process_many(train), model.process_many(target)))
        smoothed = causal_mean(raw, SMOOTH_WINDOW)
        split = int(len(train) * (1 - VALIDATION_FRACTION))
        return smoothed[split : len(train)], smoothed[len(train) :]

    def describe(self) -> str:
        return ADAPTIVE_PROTOCOL.format(
            half_life_days=self.half_life_days,
            memory_days=self.memory_days,
            gate=self.gate,
            accept_after_hours=self.accept_after_hours,
            window_hours=2 * self.accept_after_hours,
            quantile=self.quantile,
        )


Setting = Variant | Adaptive


def causal_relative(history: FloatArray, scores: FloatArray, window: int) -> FloatArray:
    """Each score divided by the median of the ``window`` scores before it (``history`` seeds the start).

    The median of a day is the normal level of that day: a host whose whole behaviour drifted
    scores about 1 again after a few hours, while an incident of a few hours moves the median
    little and keeps standing out. Uses the past only.
    """
    stream = np.concatenate((history[-window:], scores))
    lead = len(stream) - len(scores)
    out = np.empty(len(scores))
    for begin in range(0, len(scores), 2048):  # bounded memory: 2048 x window at a time
        stop = min(begin + 2048, len(scores))
        idx = np.arange(lead + begin, lead + stop)
        if lead + begin >= window:
            views = np.lib.stride_tricks.sliding_window_view(stream[idx[0] - window : idx[-1]], window)
            medians = np.median(views, axis=1)
        else:  # the first rows have less than a window of past
            medians = np.array([np.median(stream[max(0, i - window) : i]) if i else 1.0 for i in idx])
        out[begin:stop] = scores[begin:stop] / np.maximum(medians, 1e-9)
    return out


def _fit(train: FloatArray, variant: Variant) -> MSPCDetector:
    model = MSPCDetector([f"metric_{i}" for i in range(train.shape[1])], lags=variant.lags)
    model.learn_many(train)
    return model


def _scored(before: FloatArray, rows: FloatArray, variant: Variant, interval_s: float) -> FloatArray:
    """``rows`` scored by a model fit on ``before`` (which precedes them), then smoothed causally."""
    model = _fit(before, variant)
    raw = model.score_many(rows)
    if variant.relative:
        window = round(86400 / interval_s)
        # the normal level at the start is the model's own score of the last day of its training data
        history = model.score_many(before[-window:])
        raw = causal_relative(history, raw, window)
    return causal_mean(raw, SMOOTH_WINDOW)


def protocol(train: FloatArray, target: FloatArray, setting: Setting, interval_s: float) -> tuple[float, FloatArray]:
    """Train-only threshold and causal scores of ``target``, which follows ``train`` in time.

    The threshold is a high quantile of scores of the end of train that the model did not learn
    before scoring them (see each setting's ``scored``).
    """
    held_out, scores = setting.scored(train, target, interval_s)
    return float(np.quantile(held_out, setting.quantile)), scores


# The settings `vigil eval smd --detector` runs, each the one the train-only study (smd_dev) chose for
# that detector; the default is the study's overall winner.
DETECTORS: dict[str, Setting] = {
    "mspc": Variant(),  # study 1, confirmed by study 2b (static q=0.99 within the tie band of the best MSPC)
    "adaptive_mspc": Adaptive(),  # study 2b: half-life 0.5 day, acceptance after 6 h, gate 30, q=0.99, memory 30 d
}
# Study 2b's choice (mean dev F1 0.368 against 0.360 for mspc). Its one test run scored a mean F1 of 0.264, below
# mspc's 0.320: the default stays what the train-only rule chose, as switching on that figure would tune on test.
DEFAULT_DETECTOR = "adaptive_mspc"


def _figures(labels: BoolArray, scores: FloatArray, pred: BoolArray, interval_s: float) -> dict[str, float]:
    point = metrics.prf(labels, pred)
    return {
        "precision": point.precision,
        "recall": point.recall,
        "f1": point.f1,
        "pa_f1": metrics.pa_f1(labels, pred),
        "pak_f1": metrics.pak_f1(labels, pred, PAK_K),
        "pak_auc": metrics.pak_auc(labels, pred),
        "event_recall": metrics.event_recall(labels, pred),
        "false_alarms_per_day": metrics.false_alarms_per_day(labels, pred, interval_s),
        "median_delay_min": metrics.median_delay_minutes(labels, pred, interval_s),
        "auprc": metrics.auprc(labels, scores),
    }


def evaluate_machine(machine: Machine, setting: Setting) -> MachineResult:
    threshold, scores = protocol(machine.train, machine.test, setting, machine.interval_s)
    labels = machine.labels
    figures = _figures(labels, scores, scores > threshold, machine.interval_s)
    oracle = baselines.pca_oracle(machine.train, machine.test, labels)
    plain = baselines.pca_plain_oracle(machine.train, machine.test, labels)
    coin = baselines.random_scores(len(labels), RANDOM_SEED) > 0.5
    figures.update(
        threshold=threshold,
        pca_oracle_f1=oracle.f1,
        pca_plain_oracle_f1=plain.f1,
        random_f1=metrics.prf(labels, coin).f1,
        random_pa_f1=metrics.pa_f1(labels, coin),
        # diagnostic only: what this score would reach with the cheating threshold
        oracle_threshold_f1=metrics.best_f1(labels, scores)[0],
        anomaly_share=float(labels.mean()),
    )
    return MachineResult(machine, scores, threshold, oracle, figures)


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def summarise(results: Sequence[MachineResult], seconds: float, detector: str = DEFAULT_DETECTOR) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [r.figures[key] for r in results if not math.isnan(r.figures[key])]
        return _clean(float(np.mean(values))) if values else None

    return {
        "detector": detector,
        "f1_mean": mean("f1"),
        "pca_oracle_f1_mean": mean("pca_oracle_f1"),
        "pca_plain_oracle_f1_mean": mean("pca_plain_oracle_f1"),
        "random_f1_mean": mean("random_f1"),
        "oracle_threshold_f1_mean": mean("oracle_threshold_f1"),
        "pa_f1_mean": mean("pa_f1"),
        "random_pa_f1_mean": mean("random_pa_f1"),
        "pak_auc_mean": mean("pak_auc"),
        "event_recall_mean": mean("event_recall"),
        "false_alarms_per_day_mean": mean("false_alarms_per_day"),
        "auprc_mean": mean("auprc"),
        "machines": {r.machine.name: {k: _clean(v) for k, v in r.figures.items()} for r in results},
        "protocol": DETECTORS[detector].describe() + COMMON_PROTOCOL,
        "seconds": round(seconds, 2),
    }


def evaluate(
    data_dir: Path, names: Sequence[str] = (), limit: int | None = None, detector: str = DEFAULT_DETECTOR
) -> tuple[list[MachineResult], float]:
    """Every named machine (all available ones by default) under a detector of :data:`DETECTORS`, and the wall
    seconds it took."""
    started = time.monotonic()
    if detector not in DETECTORS:
        raise DatasetError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such folder (set --data or $VIGIL_DATASETS)")
    chosen = list(names) or machine_names(data_dir)
    if not chosen:
        raise DatasetError(f"{data_dir}: no <name>_train.npy with its _test.npy and _test_label.npy")
    results = [evaluate_machine(load_machine(data_dir, name, limit), DETECTORS[detector]) for name in chosen]
    return results, time.monotonic() - started
