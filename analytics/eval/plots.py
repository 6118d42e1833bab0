"""One PNG per machine: the score, its train-only threshold and the labels over time; PR curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve
from vigil.analytics.eval.metrics import segments
from vigil.analytics.eval.smd import MachineResult


def plot_machine(result: MachineResult, out_dir: Path, detector: str = "MSPC") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display; chosen before pyplot is imported
    import matplotlib.pyplot as plt

    machine = result.machine
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 8), gridspec_kw={"height_ratios": [2, 1]})
    days = np.arange(len(result.scores)) * machine.interval_s / 86400.0
    for start, stop in segments(machine.labels):
        top.axvspan(days[start], days[stop - 1], color="tab:red", alpha=0.25, lw=0)
    top.plot(days, np.maximum(result.scores, 1e-3), lw=0.6, color="tab:blue", label=f"{detector} score")
    top.plot(days, result.thresholds, color="black", ls="--", lw=1, label="train-only threshold")
    top.set_yscale("log")
    top.set_xlabel("test time (days); red: labelled anomalies")
    top.set_title(
        f"{machine.name}: F1 {result.figures['f1']:.3f} (no point adjustment), "
        f"PCA-oracle F1 {result.figures['pca_oracle_f1']:.3f}"
    )
    top.legend(loc="upper right")
    for name, scores in ((detector, result.scores), (f"PCA oracle ({result.oracle.variant})", result.oracle.scores)):
        precision, recall, _ = precision_recall_curve(machine.labels, scores)
        bottom.plot(recall, precision, lw=1, label=name)
    bottom.set_xlabel("recall")
    bottom.set_ylabel("precision")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{machine.name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
