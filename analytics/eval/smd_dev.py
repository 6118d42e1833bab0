"""Choosing the detector without the test split: synthetic incidents in the end of train.

Only ``<name>_train.npy`` is read. Per machine, the first 80% of train plays "train" and the last
20% plays "test", with synthetic changes written into it; each setting's exact protocol
(:meth:`smd_legacy.Variant.scored` / :meth:`smd_legacy.Adaptive.scored` and the quantile threshold of
:func:`smd_legacy.protocol`) then runs on that pair, so the study exercises the same code as the report,
one level down.

Incidents, labelled (8 per machine, one per eighth of the stretch, on 2 to 6 metrics that vary in
train, types in turn): a level shift of 3 train standard deviations; a broken relation (the
metrics replaced by their own values from another time, so each stays in its usual range); a stuck
metric (held at its value when the incident starts); a noise burst (2 standard deviations of added
noise). They last 10 to 60 samples, except the fifth (a level shift), which lasts 3 to 6 hours:
an adaptive model that absorbs any change after a while must pay for the long incidents it would
absorb. Unlabelled non-stationarity (:func:`nonstationary`), written before the incidents: every
machine gets a slow drift (10-30% of metrics ramp to 1-2 standard deviations over the stretch);
every second machine in the sorted list also gets a regime change (from a time in the first
10-40% of the stretch, 20-50% of metrics sit 2-5 standard deviations away for good). The rule,
fixed before each study ran: the variant with the highest mean F1 (point-wise, no adjustment) over
the machines wins; within 0.005 of it, the earlier (simpler) one in :data:`VARIANTS`.

History, for honesty. Study 1 (incidents only, all 10 to 60 samples, no drift or regime change):
the a-priori detector (static MSPC, quantile 0.995) was run once on test first (mean F1 0.308);
the study then ran with the four MSPC shapes (static won), was widened to the three quantiles,
and chose static with 0.99, which was run on test once more (mean F1 0.320): two test runs. The
diagnosis of that second run (machine-1-6 enters an unlabelled new operating level on day 2.3 of
test; the frozen model flags nearly all of it) motivated variant 3. Variant 3 was designed after
seeing that frozen models fail under unlabelled regime changes on test; its hyper-parameters were
chosen on train-only dev data: study 2, whose dev set adds the drift, the regime change and the
long incident above, and whose grid was fixed before it ran: the 12 MSPC variants of study 1 and
the adaptive MSPC with half-life 2, 1 or 0.5 days, acceptance after 6 or 2 hours, gate 30 or 10,
quantile 0.995, 0.99 or 0.999 (36 variants).

Study 2a (the adaptive model's first version: robust, winsorised spread and covariance with the
same short half-life as the mean): the frozen MSPC won clearly (best mean dev F1: mspc lag1 q=0.99
0.363, mspc static q=0.99 0.360, best adaptive 0.198: hl=2d accept=2h gate=30 q=0.99). Diagnosis
on the dev data (train only): the adaptive scores were far more heavy-tailed (99th percentile about
13 medians against 3 to 4 for the frozen model), the tail made by metrics with rare normal spikes
whose robust one-day scale was tiny, so the held-out quantile threshold sat above most incidents.
Revision (study 2b): plain spread and covariance with a long memory (half-life 30 days), the mean
alone keeping the short half-life; five configurations were tried on the dev data while revising
(mean dev F1 0.29 to 0.35, the best hl=1d accept=2h gate=30 q=0.99 memory=30d at 0.348), then the
same grid as study 2a ran on the revised model (memory 30 days for all). Study 2b's winner by the
rule: adaptive hl=0.5d accept=6h gate=30 q=0.99 at 0.368 (accept=2h the same: with gate 30 the
gate hardly fires, at most 71 rows per machine, and the level-shift rule never did), against mspc
lag1 q=0.99 0.363 and static q=0.99 0.360, the adaptive model better on the five machines with a
regime change (0.343 against 0.292) and worse on the five without (0.393 against 0.428): a narrow
margin, just outside the tie band. It became the default and was run on test once, the third test
run: mean F1 0.264 (pca_oracle 0.474, pca_plain_oracle 0.394, random 0.086), below the frozen
mspc's 0.320 (re-run in the same code as a regression check: 0.320 again). Its AUPRC (0.348 against
0.358) and oracle-threshold F1 (0.407 against 0.415) are close to mspc's; it lost most on
machine-2-7 (0.406 against 0.810) and machine-1-6 (0.221 against 0.306), where following the new
level also follows much of what is labelled. The default was left as the rule chose it.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from vigil.analytics.eval import metrics
from vigil.analytics.eval.metrics import BoolArray, FloatArray
from vigil.analytics.eval.smd_data import ASD_INTERVAL_S, SMD_INTERVAL_S, DatasetError
from vigil.analytics.eval.smd_legacy import Adaptive, Setting, Variant

DEV_FRACTION = 0.2
INCIDENTS = 8
LONG_INCIDENT = 4  # this one (a level shift) lasts hours, not minutes
LONG_HOURS = (3.0, 6.0)
SHAPES = {  # simplest first: ties go to the earlier one
    "static": (0, False),
    "static+day_median": (0, True),
    "lag1": (1, False),
    "lag1+day_median": (1, True),
}
QUANTILES = (0.995, 0.99, 0.999)  # 0.995, the choice made a priori, first
# the adaptive grid, fixed before the study ran (ordered from the slowest-adapting, most frozen-like corner)
HALF_LIFE_DAYS = (2.0, 1.0, 0.5)
ACCEPT_AFTER_HOURS = (6.0, 2.0)
GATES = (30.0, 10.0)
MEMORY_DAYS = 30.0  # the half-life of the spread and covariance, fixed (study 2b)
VARIANTS: dict[str, Setting] = {
    f"mspc {shape} q={q}": Variant(lags=lags, relative=relative, quantile=q)
    for shape, (lags, relative) in SHAPES.items()
    for q in QUANTILES
}
VARIANTS.update(
    {
        f"adaptive hl={hl:g}d accept={m:g}h gate={g:g} q={q}": Adaptive(
            half_life_days=hl, accept_after_hours=m, gate=g, quantile=q, memory_days=MEMORY_DAYS
        )
        for hl, m, g, q in itertools.product(HALF_LIFE_DAYS, ACCEPT_AFTER_HOURS, GATES, QUANTILES)
    }
)
TIE = 0.005


def inject(
    rows: FloatArray, reference: FloatArray, rng: np.random.Generator, interval_s: float = SMD_INTERVAL_S
) -> tuple[FloatArray, BoolArray]:
    """``rows`` with synthetic incidents; ``reference`` (earlier data) gives the metrics' spread."""
    out, labels = rows.copy(), np.zeros(len(rows), dtype=bool)
    spread = reference.std(axis=0)
    varying = np.flatnonzero(spread > 0)
    slot = len(rows) // INCIDENTS
    for i in range(INCIDENTS):
        length = int(rng.integers(10, 61))
        if i == LONG_INCIDENT:
            length = round(rng.uniform(*LONG_HOURS) * 3600.0 / interval_s)
        start = i * slot + int(rng.integers(0, max(1, slot - length)))
        stop = min(start + length, len(rows))
        cols = rng.choice(varying, size=min(len(varying), int(rng.integers(2, 7))), replace=False)
        span = np.ix_(np.arange(start, stop), cols)
        kind = i % 4
        if kind == 0:
            out[span] += rng.choice([-3.0, 3.0]) * spread[cols]
        elif kind == 1:
            other = (start + len(rows) // 2) % (len(rows) - length)
            out[span] = rows[other : other + stop - start][:, cols]
        elif kind == 2:
            out[span] = rows[start, cols]
        else:
            out[span] += rng.normal(0.0, 2.0, (stop - start, len(cols))) * spread[cols]
        labels[start:stop] = True
    return out, labels


def nonstationary(rows: FloatArray, reference: FloatArray, rng: np.random.Generator, regime_change: bool) -> FloatArray:
    """``rows`` with what real servers do without anyone labelling it: a slow drift, and maybe a new level.

    Drift: 10-30% of the varying metrics ramp linearly from 0 to +-(1 to 2) spreads over the stretch.
    Regime change: at a time in the first 10-40% of the stretch, 20-50% of the varying metrics
    move by +-(2 to 5) spreads and stay there. Neither is labelled.
    """
    out = rows.copy()
    spread = reference.std(axis=0)
    varying = np.flatnonzero(spread > 0)

    def some(low: float, high: float) -> FloatArray:
        size = max(1, round(rng.uniform(low, high) * len(varying)))
        picked: FloatArray = rng.choice(varying, size=min(size, len(varying)), replace=False)
        return picked

    cols = some(0.1, 0.3)
    ramp = np.linspace(0.0, 1.0, len(rows))[:, None]
    out[:, cols] += ramp * rng.choice([-1.0, 1.0], len(cols)) * rng.uniform(1.0, 2.0, len(cols)) * spread[cols]
    if regime_change:
        start = int(rng.uniform(0.1, 0.4) * len(rows))
        cols = some(0.2, 0.5)
        out[start:, cols] += rng.choice([-1.0, 1.0], len(cols)) * rng.uniform(2.0, 5.0, len(cols)) * spread[cols]
    return out


def load_train(data_dir: Path, name: str) -> FloatArray:
    path = data_dir / f"{name}_train.npy"
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        train: FloatArray = np.load(path, allow_pickle=False).astype(np.float64)
    except ValueError as exc:
        raise DatasetError(f"{path}: not a numeric .npy array ({exc})") from exc
    if train.ndim != 2 or not np.isfinite(train).all():
        raise DatasetError(f"{path}: expected a finite 2-D array, got shape {train.shape}")
    return train


def study(data_dir: Path, names: Sequence[str] = ()) -> dict[str, Any]:
    """Dev F1, event recall and false alarms per day of every variant on every machine, and the winner."""
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such folder (set --data or $VIGIL_DATASETS)")
    chosen = list(names) or sorted(p.name.removesuffix("_train.npy") for p in data_dir.glob("*_train.npy"))
    if not chosen:
        raise DatasetError(f"{data_dir}: no <name>_train.npy")
    per: dict[str, dict[str, dict[str, float]]] = {v: {} for v in VARIANTS}
    for index, name in enumerate(chosen):
        train = load_train(data_dir, name)
        interval = SMD_INTERVAL_S if name.startswith("machine-") else ASD_INTERVAL_S
        split = int(len(train) * (1 - DEV_FRACTION))
        seed = zlib.crc32(name.encode())
        moved = nonstationary(train[split:], train[:split], np.random.default_rng([seed, 1]), index % 2 == 1)
        dev, labels = inject(moved, train[:split], np.random.default_rng(seed), interval)
        runs: dict[Setting, tuple[FloatArray, FloatArray]] = {}  # the quantile only moves the threshold
        for vname, setting in VARIANTS.items():
            key = dataclasses.replace(setting, quantile=0.5)
            if key not in runs:
                runs[key] = key.scored(train[:split], dev, interval)
            held_out, scores = runs[key]
            pred = scores > float(np.quantile(held_out, setting.quantile))
            per[vname][name] = {
                "f1": metrics.prf(labels, pred).f1,
                "event_recall": metrics.event_recall(labels, pred),
                "false_alarms_per_day": metrics.false_alarms_per_day(labels, pred, interval),
            }
    means = {v: float(np.mean([m["f1"] for m in per[v].values()])) for v in VARIANTS}
    best_of = {detector: _winner([v for v in VARIANTS if VARIANTS[v].detector == detector], means)
               for detector in ("mspc", "adaptive_mspc")}  # fmt: skip
    return {"f1_mean": means, "winner": _winner(list(VARIANTS), means), "best_per_detector": best_of, "machines": per}


def _winner(names: Sequence[str], means: dict[str, float]) -> str:
    """The highest mean F1; within TIE of it, the earliest (simplest) name."""
    best = max(means[v] for v in names)
    return next(v for v in names if means[v] >= best - TIE)
