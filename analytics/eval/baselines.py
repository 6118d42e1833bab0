"""The reference scorers every SMD/ASD figure is shown beside.

- A seeded random scorer: what point adjustment makes of pure chance.
- PCA reconstruction error with an *oracle* threshold, as in QuoVadisTAD (Sarfraz et al., ICML 2024,
  "Quo Vadis, Unsupervised Time Series Anomaly Detection?"), the strongest simple baseline on SMD.
  Re-implemented from the paper's description and its public evaluation code (read, not copied):
  features min-max scaled on train, 10 principal components (the paper's choice for up to 50
  features) fit on train, per-feature absolute reconstruction error on test, that error normalised
  per feature in three ways (none; mean/std *of the test errors*; median/IQR *of the test errors*),
  smoothed by a centred moving mean, the maximum over features, and the best F1 over every
  threshold *and* normalisation on the test labels. It looks at the test labels, the test
  statistics and the future: a ceiling for PCA, not a detector one could run.
- The same PCA's plain L2 reconstruction error with an oracle threshold, without those extras.
- :func:`pca_honest`: the PCA scores one could run: fitted on the start of train, every
  statistic (scaling, the per-feature error normalisation) from train, no smoothing here (the
  caller smooths causally, as for our detectors), so the same honest threshold procedure applies.
  Four forms (:data:`HONEST_PCA`): the L2 error; the largest per-feature error; the largest after
  each feature's error is normalised by its median/IQR or mean/std on the held-out end of train.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from vigil.analytics.eval.metrics import BoolArray, FloatArray, best_f1

HONEST_PCA = ("l2", "max", "max_iqr", "max_std")
PCA_COMPONENTS = 10  # QuoVadisTAD's setting for datasets with at most 50 features (fewer: see _components)
SMOOTH_HALF = 5  # QuoVadisTAD's smoothing: mean over x[i-5 : i+4], zero for the first 5 points
IQR_EPSILON = 1e-2


@dataclass(frozen=True, slots=True)
class OracleResult:
    f1: float
    threshold: float
    scores: FloatArray
    variant: str


def random_scores(n: int, seed: int) -> FloatArray:
    """Uniform scores in [0, 1); thresholded at 0.5 they are fair coin flips."""
    return np.random.default_rng(seed).random(n)


def _minmax(train: FloatArray, test: FloatArray) -> tuple[FloatArray, FloatArray]:
    low, high = train.min(axis=0), train.max(axis=0)
    width = np.where(high > low, high - low, 1.0)
    return (train - low) / width, (test - low) / width


def _components(n_features: int) -> int:
    """10, or for fewer than 10 features QuoVadisTAD's fallback: a fifth of them, at least 2."""
    return PCA_COMPONENTS if n_features >= PCA_COMPONENTS else min(max(2, n_features // 5), n_features)


def pca_errors(train: FloatArray, test: FloatArray) -> FloatArray:
    """Per-feature absolute reconstruction error of ``test`` under a PCA fit on ``train``."""
    train, test = _minmax(train, test)
    pca = PCA(n_components=_components(train.shape[1]), svd_solver="full").fit(train)
    result: FloatArray = np.abs(test - pca.inverse_transform(pca.transform(test)))
    return result


def _centred_smooth(scores: FloatArray) -> FloatArray:
    cum = np.concatenate((np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)))
    n, out = len(scores), np.zeros_like(scores)
    idx = np.arange(SMOOTH_HALF, n)
    stop = np.minimum(idx + SMOOTH_HALF - 1, n)
    out[SMOOTH_HALF:] = (cum[stop] - cum[idx - SMOOTH_HALF]) / (stop - idx + SMOOTH_HALF)[:, None]
    return out


def _normalised(errors: FloatArray, how: str) -> FloatArray:
    out: FloatArray = errors
    if how == "mean-std":
        std = errors.std(axis=0)
        out = (errors - errors.mean(axis=0)) / np.where(std > 0, std, 1.0)
    elif how == "median-iqr":
        q25, q50, q75 = np.percentile(errors, [25, 50, 75], axis=0)
        out = (errors - q50) / (np.abs(q75 - q25) + IQR_EPSILON)
    return out


def pca_oracle(train: FloatArray, test: FloatArray, labels: BoolArray) -> OracleResult:
    errors = pca_errors(train, test)
    results = []
    for how in ("none", "mean-std", "median-iqr"):
        scores = _centred_smooth(_normalised(errors, how)).max(axis=1)
        f1, threshold = best_f1(labels, scores)
        results.append(OracleResult(f1, threshold, scores, how))
    return max(results, key=lambda r: r.f1)


def pca_plain_oracle(train: FloatArray, test: FloatArray, labels: BoolArray) -> OracleResult:
    scores = np.sqrt((pca_errors(train, test) ** 2).sum(axis=1))
    f1, threshold = best_f1(labels, scores)
    return OracleResult(f1, threshold, scores, "l2")


def pca_honest(fit: FloatArray, held_out: FloatArray, test: FloatArray, how: str) -> tuple[FloatArray, FloatArray]:
    """Raw PCA scores of ``held_out`` and ``test`` rows, the PCA fit on ``fit`` (both follow it in time)."""
    errors = pca_errors(fit, np.concatenate((held_out, test)))
    calibration = errors[: len(held_out)]
    if how == "l2":
        scores = np.sqrt((errors**2).sum(axis=1))
    elif how == "max":
        scores = errors.max(axis=1)
    elif how == "max_iqr":
        q25, q50, q75 = np.percentile(calibration, [25, 50, 75], axis=0)
        scores = ((errors - q50) / (np.abs(q75 - q25) + IQR_EPSILON)).max(axis=1)
    elif how == "max_std":
        std = calibration.std(axis=0)
        scores = ((errors - calibration.mean(axis=0)) / np.where(std > 0, std, 1.0)).max(axis=1)
    else:
        raise ValueError(f"unknown honest PCA form {how!r}: choose one of {', '.join(HONEST_PCA)}")
    return scores[: len(held_out)], scores[len(held_out) :]
