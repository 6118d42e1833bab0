"""PNG figures of a NAB run: a few series with their scores and windows, and score against threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from vigil.analytics.eval.nab_corpus import Series
from vigil.analytics.eval.nab_scoring import FloatArray, normalise

if TYPE_CHECKING:
    from vigil.analytics.eval.nab import ProfileResult


def pick_series(series: Sequence[Series], per_category: int = 1) -> list[int]:
    """The first labelled file of each category (a fixed rule, not chosen by score)."""
    chosen: list[int] = []
    taken: dict[str, int] = {}
    for i, s in enumerate(series):
        category = s.name.split("/")[0]
        if s.layout.windows and taken.get(category, 0) < per_category:
            taken[category] = taken.get(category, 0) + 1
            chosen.append(i)
    return chosen


def plot_series(path: Path, series: Sequence[Series], scores: Sequence[FloatArray], threshold: float) -> Path:
    picks = pick_series(series)
    fig, axes = plt.subplots(len(picks), 1, figsize=(13, 2.6 * max(len(picks), 1)), squeeze=False)
    for ax, i in zip(axes[:, 0], picks, strict=True):
        s, sc = series[i], scores[i]
        x = np.arange(len(s.values))
        ax.plot(x, s.values, color="0.25", lw=0.6)
        for a, b in s.layout.windows:
            ax.axvspan(a, b, color="gold", alpha=0.35, lw=0)
        ax.axvspan(0, s.layout.probation, color="0.85", alpha=0.5, lw=0)
        hits = np.flatnonzero((sc >= threshold) & s.layout.scorable)
        ax.plot(hits, s.values[hits], "v", color="crimson", ms=6, label="detection")
        twin = ax.twinx()
        # Scores are mostly one-record spikes: stems stay visible where a line would be lost at this scale.
        raised = np.flatnonzero(sc > 0.02)
        twin.vlines(raised, 0.0, sc[raised], color="tab:blue", lw=0.6, alpha=0.8)
        twin.axhline(threshold, color="tab:blue", ls="--", lw=0.7)
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("score")
        ax.set_title(f"{s.name} (gold: label windows, grey: probation, blue: anomaly score)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_threshold_curve(path: Path, results: Mapping[str, ProfileResult]) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in results.items():
        t = r.sweep.thresholds[1:]  # the first entry is +inf (detect nothing)
        norm = np.array([normalise(v, r.null, r.perfect) for v in r.sweep.raw[1:]])
        ax.plot(t, norm, lw=1, label=f"{name} (best {r.score:.1f} at {r.threshold:.3f})")
        ax.plot([r.threshold], [r.score], "o", ms=4)
    ax.set_xlabel("anomaly-score threshold (one for the whole corpus)")
    ax.set_ylabel("normalised NAB score")
    ax.set_ylim(-50, 100)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_plots(
    folder: Path, series: Sequence[Series], scores: Sequence[FloatArray], results: Mapping[str, ProfileResult]
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    standard = results.get("standard") or next(iter(results.values()))
    return [
        plot_series(folder / "nab_series.png", series, scores, standard.threshold),
        plot_threshold_curve(folder / "nab_threshold_curve.png", results),
    ]
