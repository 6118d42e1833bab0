"""``vigil eval smd-select``: the protocol that chooses the default SMD setting on real labels, and confirms it.

The protocol, fixed before the confirmation data was scored:

1. Entities: every entity of ``--data`` (SMD then ASD, natural name order). The *selection half* is
   every second one from the first (:func:`smd_data.halves`), the *confirmation half* the others;
   every entity of each ``--confirm`` folder (JumpStarter) is confirmation data too.
2. The grid (:data:`GRID`, simplest first): every scorer of :data:`SCORER_GRID` (single models,
   then ensembles) x a trailing mean of 5 or 15 samples x every threshold rule of
   :data:`THRESHOLDS`, each computed from train alone (:mod:`honest`).
3. Objective: per entity, the mean of point-wise F1 at the setting's own threshold and event
   recall at the alarm budget (:func:`smd.operational`); averaged over the selection half. The
   highest wins; within :data:`TIE` of it, the earliest in the grid.
4. The honest PCA baseline gets the same choice: among :data:`baselines.HONEST_PCA`'s forms, run
   with the winner's smoothing and threshold rule, the highest objective on the selection half.
5. Then, once, the winner and the baseline on the confirmation half and the ``--confirm`` folders.

Every setting is scored on every entity (the confirmation figures of the other settings answer
"would another choice have done better there", and do not move the choice).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vigil.analytics.eval import baselines
from vigil.analytics.eval.honest import Cache, Honest, Threshold
from vigil.analytics.eval.smd import operational
from vigil.analytics.eval.smd_data import DatasetError, Machine, halves, load_machine, machine_names

from vigil.progress import Progress, Silent

SCORER_GRID = (
    "adaptive_mspc",
    "mspc",
    "var_residual",
    "var_residual_online",
    "robust_z",
    "adaptive_mspc+mspc",
    "robust_z+mspc",
    "adaptive_mspc+var_residual",
    "mspc+var_residual",
    "adaptive_mspc+mspc+var_residual",
)
SMOOTHING = (5, 15)
THRESHOLDS = (
    *(Threshold("conformal", a) for a in (0.1, 0.05, 0.02, 0.01)),
    *(Threshold("spot", q) for q in (1e-2, 1e-3, 1e-4)),
    *(Threshold("budget", b) for b in (1.0, 2.0, 4.0)),
    *(Threshold("iqr", k) for k in (5.0, 10.0)),
    Threshold("spot_stream", 1e-3),
    Threshold("dspot", 1e-3),
)
GRID = [Honest(s, w, t) for s in SCORER_GRID for w in SMOOTHING for t in THRESHOLDS]
TIE = 0.005

# What `vigil eval smd` says about how its default was chosen (kept in step with DEFAULT_DETECTOR by a test).
SELECTION_PROTOCOL = (
    "Chosen by `vigil eval smd-select` (analytics/eval/smd_select.py): a grid fixed in advance ("
    f"{len(SCORER_GRID)} scorers, single models and mean-surprise ensembles, x trailing means of 5 or 15 samples "
    f"x {len(THRESHOLDS)} train-only threshold rules: conformal, SPOT, streaming SPOT and DSPOT, per-entity page "
    "budgets, median + k IQR), objective the mean of F1 and event recall at the budget, chosen on the selection "
    "half of SMD+ASD (every second entity in name order: machine-1-2, 1-4, 2-1, 2-4, 3-2, omi-1, omi-3, omi-5; "
    "all development of the models and the grid was done on that half), then run once on the other half and on "
    "JumpStarter Dataset2. The honest PCA baseline's form was chosen by the same rule on the same half. After that "
    "run the VAR model's statistics were made smaller (autocovariances instead of the full lagged scatter, for the "
    "2 KB-per-series state target; the same estimator up to edge terms) and the whole protocol was run again on "
    "the final code: same choice, figures within 0.004. "
)


def name_of(setting: Honest) -> str:
    return f"{setting.scorer} smooth={setting.smooth} {setting.threshold.method}={setting.threshold.value:g}"


@dataclass(frozen=True, slots=True)
class Split:
    name: str
    machines: list[Machine]


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def score(setting: Honest, machines: Sequence[Machine], cache: Cache) -> dict[str, float]:
    """Mean F1, event recall at the budget and the objective of one setting over some entities."""
    figures = [operational(m, setting.run(m, cache))[0] for m in machines]
    f1 = _mean([f["f1"] for f in figures])
    recall = _mean([f["event_recall_at_budget"] for f in figures])
    return {"objective": (f1 + recall) / 2, "f1": f1, "event_recall_at_budget": recall, "entities": len(machines)}


def choose(ranked: dict[str, dict[str, float]], order: Sequence[str]) -> str:
    """The highest objective; within TIE of it, the earliest in ``order``."""
    best = max(r["objective"] for r in ranked.values())
    return next(n for n in order if ranked[n]["objective"] >= best - TIE)


def splits(data_dir: Path, confirm: Sequence[Path]) -> list[Split]:
    """The selection half, the confirmation half and one split per ``confirm`` folder."""
    for folder in (data_dir, *confirm):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder (set --data or $VIGIL_DATASETS)")
    names = machine_names(data_dir)
    if len(names) < 2:
        raise DatasetError(f"{data_dir}: at least two entities are needed to split into halves")
    selection, confirmation = halves(names)
    out = [
        Split("selection", [load_machine(data_dir, n) for n in selection]),
        Split("confirmation", [load_machine(data_dir, n) for n in confirmation]),
    ]
    out += [Split(folder.name, [load_machine(folder, n) for n in machine_names(folder)]) for folder in confirm]
    return out


def study(
    data_dir: Path,
    confirm: Sequence[Path] = (),
    grid: Sequence[Honest] = tuple(GRID),
    selection_only: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every setting on every split (``selection_only``: on the selection half alone, for development), the
    winner chosen on the selection split, and the baseline beside it."""
    progress = progress or Silent()
    started = time.monotonic()
    progress.phase("loading the splits")
    parts = splits(data_dir, confirm)[: 1 if selection_only else None]
    cache: Cache = {}
    progress.phase(f"{len(grid)} settings x {len(parts)} splits", len(grid))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for setting in grid:
        table[name_of(setting)] = {p.name: score(setting, p.machines, cache) for p in parts}
        best = max(table.values(), key=lambda row: row[parts[0].name]["objective"])[parts[0].name]
        progress.advance(1, f"best {parts[0].name} objective so far {best['objective']:.3f}")
    progress.phase("the baseline's forms")
    order = [name_of(s) for s in grid]
    winner = choose({n: table[n]["selection"] for n in order}, order)
    chosen = next(s for s in grid if name_of(s) == winner)
    forms = {form: chosen.with_scorer(f"pca_{form}") for form in baselines.HONEST_PCA}
    pca_table = {form: {p.name: score(s, p.machines, cache) for p in parts} for form, s in forms.items()}
    pca_form = choose({f: pca_table[f]["selection"] for f in forms}, list(forms))
    families = {s.scorer: name_of(s) for s in grid}  # the best setting of each scorer on the selection half
    for s in grid:
        name = name_of(s)
        if table[name]["selection"]["objective"] > table[families[s.scorer]]["selection"]["objective"]:
            families[s.scorer] = name
    return {
        "winner": winner,
        "pca_form": pca_form,
        "splits": {p.name: [m.name for m in p.machines] for p in parts},
        "winner_figures": table[winner],
        "pca_honest_figures": pca_table[pca_form],
        "best_per_scorer": {scorer: {"setting": n, **table[n]} for scorer, n in families.items()},
        "pca_forms": pca_table,
        "grid": table,
        "protocol": __doc__,
        "seconds": round(time.monotonic() - started, 1),
    }
