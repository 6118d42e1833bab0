"""``vigil bench models``: CPU cost of the detector models, and ``--smd`` the multivariate comparison.

Throughput: each model runs ``process_many`` (score, then learn, refits included) over a seeded
synthetic stream on one thread (BLAS and torch pools limited to 1); the figure is rows/s and
feature samples/s. ``hot`` is the same stream with refits disabled after the first fit: what a
row costs between refits. The live truthfulness detector and the sibling-deviation function run on
simulator frames.

``--smd``: IsolationForest, PCA and the autoencoder on the Server Machine Dataset / ASD series in
``$VIGIL_DATASETS/smd``. Each model is fitted on the first 80 % of the train split; the threshold
is the ``--quantile`` of its scores on the last 20 % of the train split (never the test split);
figures are point-wise precision/recall/F1 at that threshold, AUPRC (threshold-free), the oracle
F1 (best threshold on the test labels, only to compare with published oracle figures) and CPU
seconds per 1k rows for fitting and scoring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console

from vigil.analytics.eval import datasets_root
from vigil.analytics.models.base import Detector
from vigil.cli.bench import bench_app, machine
from vigil.cli.common import data_option
from vigil.cli.extras import require

console = Console(highlight=False)
REFITS = ("seasonal", "iforest", "pca", "autoencoder")  # the models with a refit schedule


def _models() -> dict[str, type[Detector]]:
    from vigil.analytics.models import autoencoder, changepoint, iforest, pca, peers, seasonal, truthfulness

    out: dict[str, type[Detector]] = {}
    for module in (seasonal, iforest, pca, autoencoder, peers, truthfulness, changepoint):
        out.update(module.MODELS)
    return out


def _stream(name: str, rows: int, rng: np.random.Generator) -> tuple[np.ndarray[Any, Any], str]:
    """A workload shaped like what the model is for, and its description."""
    t = np.arange(rows)[:, None]
    if name == "seasonal":
        x = 10 + 3 * np.sin(2 * np.pi * (t + np.arange(8)) / 144) + rng.normal(0, 0.3, (rows, 8))
        return x, "8 features, period 144 detected"
    if name in ("peer_gpu",):
        return 60 + np.linspace(0, 3, 8) + rng.normal(0, 0.5, (rows, 8)), "8 GPUs of a host"
    if name == "peer_rank":
        return 0.5 + rng.normal(0, 0.01, (rows, 64)), "64 ranks of a job"
    if name == "frozen":
        return np.round(rng.normal(50, 5, (rows, 64)), 1), "64 series of a host"
    if name == "changepoint":
        return np.column_stack([1e5 + rng.normal(0, 1e3, rows), 0.5 + rng.normal(0, 0.01, rows)]), "tokens/s, step s"
    mix = rng.normal(size=(rows, 8)) @ rng.normal(size=(8, 38))
    return mix + 0.1 * rng.normal(size=(rows, 38)), "38 correlated features (SMD-like)"


def _rate(fn: Callable[[], Any], rows: int) -> float:
    """Rows per CPU second of ``fn`` (process time: other processes on the machine do not count)."""
    start = time.process_time()
    fn()
    return rows / max(time.process_time() - start, 1e-9)


def throughput(rows: int) -> list[tuple[str, str, float, float, float]]:
    """(model, workload, rows/s refits included, rows/s between refits, features per row)."""
    out = []
    for name, cls in _models().items():
        X, what = _stream(name, rows, np.random.default_rng(0))
        names = [f"f{i}" for i in range(X.shape[1])]
        amortised = _rate(partial(cls(names).process_many, X), rows)
        model = cls(names)
        half = rows // 2
        model.process_many(X[:half])
        if hasattr(model, "refit_every"):
            model.refit_every = 0  # keeps the fit in force: the cost of a row between refits
        hot = _rate(partial(model.process_many, X[half:]), rows - half)
        out.append((name, what, amortised, hot, X.shape[1]))
    return out


def frame_throughput(seconds: int) -> list[tuple[str, str, float]]:
    """Samples/s of the live truthfulness detector and of sibling deviation on simulator frames."""
    from vigil.analytics.config import TruthfulnessConfig
    from vigil.analytics.detectors.truthfulness import TruthfulnessDetector
    from vigil.analytics.models.peers import SiblingIndex, frame_sibling_deviation
    from vigil.analytics.slots import SlotTable, build_frame
    from vigil.collectors.sim import FleetSimulator, SimConfig

    start = 1_767_225_600.0
    sim = FleetSimulator(SimConfig(nodes=32, ticks_per_batch=10, schedule="none", training=False), start)
    table = SlotTable()
    det = TruthfulnessDetector(TruthfulnessConfig(), table)
    index = SiblingIndex(table)
    frames = []
    for k in range(seconds):
        batches = sim.tick(start + k).telemetry
        if batches:
            frames.append(build_frame(table, [table.admit(0, b) for b in batches]))
    samples = sum(f.size for f in frames)
    what = f"32 hosts x 69 series, 10 ticks per batch, {samples} samples"
    truth = _rate(lambda: [det.observe_frame(f) for f in frames], samples)
    peer = _rate(lambda: [frame_sibling_deviation(index, f, lo, hi) for f in frames for lo, hi in f.rounds], samples)
    return [("truthfulness (live)", what, truth), ("frame_sibling_deviation", what, peer)]


# -- SMD comparison


def _smd_series(root: Path) -> list[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    out = []
    for train in sorted(root.glob("*_train.npy")):
        stem = train.name.removesuffix("_train.npy")
        load = np.load
        test, labels = load(root / f"{stem}_test.npy", allow_pickle=False), load(root / f"{stem}_test_label.npy")
        out.append((stem, load(train, allow_pickle=False).astype(np.float64), test.astype(np.float64), labels))
    return out


def _metrics(y: Any, scores: Any, threshold: float) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    alarm = scores > threshold
    tp = float((alarm & y).sum())
    precision, recall = tp / max(int(alarm.sum()), 1), tp / max(int(y.sum()), 1)
    p, r, _ = precision_recall_curve(y, scores)
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "auprc": float(average_precision_score(y, scores)),
        "oracle_f1": float(np.max(2 * p * r / np.maximum(p + r, 1e-12))),
    }


def evaluate(cls: type[Detector] | None, seed: int, train: Any, test: Any, labels: Any, q: float) -> dict[str, float]:
    """One model (None: a uniform random scorer) fitted on train[:80%], thresholded on train[80%:]."""
    cut = int(0.8 * len(train))
    if cls is None:
        rng = np.random.default_rng(seed)
        threshold = float(np.quantile(rng.random(len(train) - cut), q))
        return {
            **_metrics(labels.astype(bool), rng.random(len(test)), threshold),
            "fit_s_per_1k": 0.0,
            "score_s_per_1k": 0.0,
        }
    features = [f"m{i}" for i in range(train.shape[1])]
    model = cls(features, window=cut, refit_every=0, seed=seed)  # type: ignore[call-arg]
    t0 = time.process_time()
    model.learn_many(train[:cut])
    model.refit()  # type: ignore[attr-defined]
    fit_s = time.process_time() - t0
    threshold = float(np.quantile(model.score_many(train[cut:]), q))
    t0 = time.process_time()
    scores = model.score_many(test)
    score_s = time.process_time() - t0
    found = _metrics(labels.astype(bool), scores, threshold)
    return {**found, "fit_s_per_1k": 1000 * fit_s / cut, "score_s_per_1k": 1000 * score_s / len(test)}


def smd(root: Path, quantile: float, names: list[str], seeds: int) -> None:
    """Per series the mean over seeds; per group of series the mean, and its range over seeds."""
    models: dict[str, type[Detector] | None] = {**_models(), "random": None}
    rows: dict[str, list[tuple[str, list[dict[str, float]]]]] = {}
    for stem, train, test, labels in _smd_series(root):
        for name in [*names, "random"]:
            if name not in models:
                console.print(f"{name}: not available (torch missing?)")
                continue
            runs = [evaluate(models[name], seed, train, test, labels, quantile) for seed in range(seeds)]
            rows.setdefault(name, []).append((stem, runs))
            r = {k: float(np.mean([run[k] for run in runs])) for k in runs[0]}
            console.print(
                f"{stem:12s} {name:12s} P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
                f"AUPRC {r['auprc']:.3f} oracle-F1 {r['oracle_f1']:.3f} "
                f"fit {r['fit_s_per_1k']:.4f} s/1k score {r['score_s_per_1k']:.4f} s/1k"
            )
    for group, prefix in (("SMD machines", "machine-"), ("ASD servers", "omi-")):
        console.print(f"\nmean over {group} (min-max over {seeds} seeds):")
        for name, results in rows.items():
            picked = [runs for stem, runs in results if stem.startswith(prefix)]
            if not picked:
                continue

            def stat(key: str, picked: list[list[dict[str, float]]] = picked) -> str:
                per_seed = [np.mean([runs[s][key] for runs in picked]) for s in range(seeds)]
                return f"{np.mean(per_seed):.3f} ({min(per_seed):.3f}-{max(per_seed):.3f})"

            console.print(
                f"  {name:12s} F1 {stat('f1')} AUPRC {stat('auprc')} oracle-F1 {stat('oracle_f1')}; "
                f"fit {stat('fit_s_per_1k')} s/1k rows, score {stat('score_s_per_1k')} s/1k rows ({len(picked)} series)"
            )


@bench_app.command("models")
def models_command(
    rows: int = typer.Option(20_000, help="rows per model in the throughput run"),
    smd_run: bool = typer.Option(False, "--smd", help="run the IsolationForest / PCA / autoencoder comparison"),
    data: Path | None = data_option("the SMD-layout folder for --smd (default: $VIGIL_DATASETS/smd)"),
    datasets: Path | None = typer.Option(None, "--datasets", hidden=True, help="deprecated: --data DATASETS/smd"),
    quantile: float = typer.Option(0.99, help="threshold: this quantile of the held-out train scores"),
    skip_throughput: bool = typer.Option(False, help="only the SMD comparison"),
    seeds: int = typer.Option(3, min=1, help="seeds per model in the SMD comparison"),
) -> None:
    """Throughput of every detector model on one thread, and optionally the SMD comparison."""
    require("bench models", "server")
    # installed with scikit-learn (untyped); imported here to keep the CLI's start light
    from threadpoolctl import threadpool_limits

    console.print(f"machine: {machine()}; one thread (BLAS/torch pools limited to 1), CPU time")
    with threadpool_limits(1):
        _torch_threads()
        if not skip_throughput:
            for name, what, amortised, hot, d in throughput(rows):
                refits = f", {hot:,.0f} rows/s between refits ({hot * d:,.0f} samples/s)" if name in REFITS else ""
                console.print(f"{name:12s} {what}: {amortised:,.0f} rows/s ({amortised * d:,.0f} samples/s){refits}")
            for name, what, rate in frame_throughput(120):
                console.print(f"{name}: {what}: {rate:,.0f} samples/s")
        if smd_run:
            root = data or (datasets or datasets_root()) / "smd"
            if not root.exists():
                raise typer.BadParameter(f"no SMD data at {root} (give --data or set VIGIL_DATASETS)")
            console.print(
                f"\nSMD/ASD: fit on train[:80%], threshold = q{quantile} of scores on train[80%:], "
                "point-wise metrics on test (no point adjustment); oracle-F1 = best threshold on test labels"
            )
            smd(root, quantile, ["pca", "iforest", "autoencoder"], seeds)


def _torch_threads() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
