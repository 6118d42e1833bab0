"""Disk failure prediction from SMART attributes and their trends.

Two models share one feature table (``disk_features``):

- ``RulePrior`` works on day one, with no fleet history. It is Bayes' rule with likelihood ratios
  taken from Backblaze's published SMART study (2016, ~70k drives): 76.7% of failed drives showed
  one of attributes 5, 187, 188, 197, 198 above zero, against 4.2% of working drives; the base
  rate is an annualised failure rate of 1.5%. Growth of a counter within the trend window is much
  stronger evidence than an old non-zero count, so it multiplies the odds again.
- ``GbmModel``: scikit-learn histogram gradient boosting with isotonic calibration, trained on a
  fleet's own history (``vigil train disk``) in the Backblaze daily-CSV layout, which is what
  every public SMART dataset and most exporters use.

Rows are one drive on one day; columns are ``smart_<id>_raw``. The horizon is how far ahead a
failure counts as predicted: a row is positive when its drive fails within ``horizon_days``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]

# Attributes the issue names: reallocated (5), uncorrectable reported (187), command timeout (188),
# pending sectors (197), offline uncorrectable (198), UDMA CRC (199), power-on hours (9), temp (194).
ATTRIBUTES = (5, 187, 188, 197, 198, 199, 9, 194)
COUNTERS = (5, 187, 188, 197, 198, 199)  # error counters: their growth is evidence
BASELINE_RULE = (5, 197, 198)  # "SMART 5, 197 or 198 raw > 0": the baseline every model must beat
FEATURES = (
    *[f"smart_{a}_raw" for a in ATTRIBUTES],
    *[f"smart_{a}_delta" for a in COUNTERS],
)

# Backblaze 2016 "What SMART stats tell us about hard drives": share of drives with any of
# 5/187/188/197/198 > 0 among failed (0.767) and working (0.042) drives.
P_FLAG_FAILED = 0.767
P_FLAG_WORKING = 0.042
ANNUAL_FAILURE_RATE = 0.015
# Counter growth inside the trend window: treated as a further 5x odds (a drive actively
# reallocating is failing now, not carrying an old scar). A prior, stated as such.
GROWTH_ODDS = 5.0


def read_smart_csv(paths: Sequence[Path]) -> pd.DataFrame:
    """Backblaze-layout CSVs (``date, serial_number, model, failure, smart_N_raw...``), any subset of
    SMART columns; missing attributes become NaN. Only the columns we use are read."""
    wanted = {"date", "serial_number", "model", "failure", *[f"smart_{a}_raw" for a in ATTRIBUTES]}
    frames = []
    for path in paths:
        frame = pd.read_csv(path, usecols=lambda c: c in wanted, low_memory=False)
        missing = {"date", "serial_number", "failure"} - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: not a SMART daily CSV, missing columns {sorted(missing)}")
        frames.append(frame)
    if not frames:
        raise ValueError("no SMART CSV files given")
    out = pd.concat(frames, ignore_index=True)
    for a in ATTRIBUTES:
        col = f"smart_{a}_raw"
        out[col] = pd.to_numeric(out[col], errors="coerce") if col in out else np.nan
    out["date"] = pd.to_datetime(out["date"])
    out["failure"] = pd.to_numeric(out["failure"], errors="coerce").fillna(0).astype(np.int8)
    return out.sort_values(["serial_number", "date"], kind="stable").reset_index(drop=True)


def disk_features(frame: pd.DataFrame, trend_days: int = 7) -> pd.DataFrame:
    """The feature table: latest raw values plus each counter's growth over ``trend_days``.

    Vectorised per drive with a time-based rolling minimum, so a year of a large fleet is a few
    group operations, not a Python loop per row."""
    out = frame[["serial_number", "date"]].copy()
    for a in ATTRIBUTES:
        out[f"smart_{a}_raw"] = frame[f"smart_{a}_raw"].to_numpy(dtype=np.float64)
    # A time-based rolling window needs each drive's rows in date order; compute on a sorted copy
    # and put the results back by index, so callers keep their row order.
    ordered = frame.sort_values(["serial_number", "date"], kind="stable")
    by_drive = ordered.set_index("date").groupby("serial_number", sort=False)
    for a in COUNTERS:
        col = f"smart_{a}_raw"
        low = by_drive[col].rolling(f"{trend_days}D", min_periods=1, closed="both").min().to_numpy()
        low_by_row = pd.Series(low, index=ordered.index).reindex(frame.index).to_numpy()
        out[f"smart_{a}_delta"] = np.clip(frame[col].to_numpy(dtype=np.float64) - low_by_row, 0.0, None)
    return out


def label_within(frame: pd.DataFrame, horizon_days: int) -> npt.NDArray[np.int8]:
    """1 for rows whose drive reports ``failure=1`` within ``horizon_days`` after the row's date."""
    fail_date = frame.loc[frame["failure"] == 1].groupby("serial_number")["date"].min()
    when = frame["serial_number"].map(fail_date)
    days = (when - frame["date"]).dt.days
    labels: npt.NDArray[np.int8] = ((days >= 0) & (days <= horizon_days)).to_numpy(dtype=np.int8)
    return labels


def baseline_rule(features: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """The rule every model must beat: any of SMART 5, 197, 198 raw above zero."""
    flags = np.zeros(len(features), dtype=np.bool_)
    for a in BASELINE_RULE:
        flags |= np.nan_to_num(features[f"smart_{a}_raw"].to_numpy(dtype=np.float64)) > 0
    return flags


@dataclass(frozen=True, slots=True)
class RulePrior:
    """Failure probability within ``horizon_days`` from the published SMART base rates."""

    horizon_days: int = 30

    def base_rate(self) -> float:
        return float(1.0 - (1.0 - ANNUAL_FAILURE_RATE) ** (self.horizon_days / 365.0))

    def clean_probability(self) -> float:
        """The probability for a drive with no SMART evidence at all (every counter zero)."""
        odds = self.base_rate() / (1.0 - self.base_rate()) * (1 - P_FLAG_FAILED) / (1 - P_FLAG_WORKING)
        return odds / (1.0 + odds)

    def predict_proba(self, features: pd.DataFrame) -> FloatArray:
        base = self.base_rate()
        odds = np.full(len(features), base / (1.0 - base))
        flagged = np.zeros(len(features), dtype=np.bool_)
        grown = np.zeros(len(features), dtype=np.bool_)
        for a in (5, 187, 188, 197, 198):
            flagged |= np.nan_to_num(features[f"smart_{a}_raw"].to_numpy(dtype=np.float64)) > 0
            grown |= np.nan_to_num(features[f"smart_{a}_delta"].to_numpy(dtype=np.float64)) > 0
        odds *= np.where(flagged, P_FLAG_FAILED / P_FLAG_WORKING, (1 - P_FLAG_FAILED) / (1 - P_FLAG_WORKING))
        odds *= np.where(grown, GROWTH_ODDS, 1.0)
        return odds / (1.0 + odds)

    def evidence(self, row: Mapping[str, float]) -> dict[str, Any]:
        return {k: float(v) for k, v in row.items() if k in FEATURES and math.isfinite(v) and v > 0}


class GbmModel:
    """Gradient boosting on the feature table, calibrated (isotonic) so its output is a probability."""

    VERSION = 1

    def __init__(self, horizon_days: int = 30, seed: int = 0, max_iter: int = 200) -> None:
        self.horizon_days = horizon_days
        self.seed = seed
        self.max_iter = max_iter
        self.model: Any = None

    def fit(self, features: pd.DataFrame, labels: npt.NDArray[np.int8], max_negatives: int = 200_000) -> GbmModel:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import HistGradientBoostingClassifier

        X = features[list(FEATURES)].to_numpy(dtype=np.float64)
        y = np.asarray(labels)
        if y.sum() < 3:
            raise ValueError(f"need at least 3 positive rows to train, got {int(y.sum())}")
        # Healthy drive-days outnumber failing ones ~1000:1; keep every positive and a seeded sample of
        # negatives, then weight the sampled negatives back up so calibrated probabilities stay honest.
        rng = np.random.default_rng(self.seed)
        neg = np.flatnonzero(y == 0)
        keep_neg = rng.choice(neg, size=min(len(neg), max_negatives), replace=False)
        idx = np.sort(np.concatenate([np.flatnonzero(y == 1), keep_neg]))
        weight = np.where(y[idx] == 0, len(neg) / max(len(keep_neg), 1), 1.0)
        gbm = HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=0.05, random_state=self.seed)
        self.model = CalibratedClassifierCV(gbm, method="isotonic", cv=3)
        self.model.fit(X[idx], y[idx], sample_weight=weight)
        return self

    def predict_proba(self, features: pd.DataFrame) -> FloatArray:
        if self.model is None:
            raise RuntimeError("GbmModel is not trained; run `vigil train disk` or use RulePrior")
        X = features[list(FEATURES)].to_numpy(dtype=np.float64)
        return np.asarray(self.model.predict_proba(X)[:, 1], dtype=np.float64)

    def save(self, path: Path) -> None:
        import joblib

        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(
            {"version": self.VERSION, "horizon_days": self.horizon_days, "features": FEATURES, "model": self.model},
            path,
        )

    @classmethod
    def load(cls, path: Path) -> GbmModel:
        import joblib

        blob = joblib.load(path)  # our own file, written by `vigil train disk`; never load untrusted ones
        if blob.get("version") != cls.VERSION or tuple(blob.get("features", ())) != FEATURES:
            raise ValueError(f"{path}: disk model v{blob.get('version')} does not match this Vigil (v{cls.VERSION})")
        out = cls(horizon_days=int(blob["horizon_days"]))
        out.model = blob["model"]
        return out
