"""``vigil eval disk``: recall of failing drives at a fixed false-positive rate and lead time.

Two layouts are understood:

- **Backblaze daily CSVs** (one row per drive per day, ``failure`` = 1 on the day it failed), the
  layout of every public SMART dataset. Drives are split by serial (seeded, 50/20/30); the GBM is
  trained on half the drives, its threshold set on a fifth (validation) for the target drive-level
  false-positive rate, and the test drives are scored. A failing drive counts as caught when it is
  flagged between ``horizon`` and ``lead`` days before it failed; a healthy drive is a false
  positive if it is flagged on any day. The rule prior and the baseline rule are scored the same way.
- **Alibaba SSD failure tickets** (``failure_time`` and ``r_<id>`` columns, failed drives only):
  there are no healthy drives and one SMART snapshot per drive, taken at failure, so only the share
  of failed drives each rule flags can be measured; no false-positive rate, no lead time. The
  report says so rather than inventing them.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from vigil.analytics.models.predict.disk import (
    ATTRIBUTES,
    GbmModel,
    RulePrior,
    baseline_rule,
    disk_features,
    label_within,
    read_smart_csv,
)


def _csv_paths(data: Path) -> list[Path]:
    return sorted(data.rglob("*.csv")) if data.is_dir() else [data]


def is_alibaba_tickets(data: Path) -> bool:
    path = data if data.is_file() else next(iter(sorted(data.rglob("ssd_failure_tag.csv*"))), None)
    return path is not None and path.name.startswith("ssd_failure_tag")


def _drive_flags(
    frame: pd.DataFrame, flags: npt.NDArray[np.bool_], fail_day: pd.Series, horizon: int, lead: int
) -> tuple[pd.Series, pd.Series]:
    """Per drive: flagged inside [fail - horizon, fail - lead] (failing drives), flagged ever (healthy)."""
    days_before = (frame["serial_number"].map(fail_day) - frame["date"]).dt.days
    in_window = flags & (days_before >= lead).to_numpy() & (days_before <= horizon).to_numpy()
    caught = pd.Series(in_window).groupby(frame["serial_number"].to_numpy()).any()
    ever = pd.Series(flags).groupby(frame["serial_number"].to_numpy()).any()
    return caught, ever


def _score(frame: pd.DataFrame, flags: npt.NDArray[np.bool_], horizon: int, lead: int) -> dict[str, Any]:
    fail_day = frame.loc[frame["failure"] == 1].groupby("serial_number")["date"].min()
    caught, ever = _drive_flags(frame, flags, fail_day, horizon, lead)
    failing = caught.index.isin(fail_day.index)
    recall = float(caught[failing].mean()) if failing.any() else float("nan")
    fpr = float(ever[~failing].mean()) if (~failing).any() else float("nan")
    return {
        "recall": round(recall, 4),
        "fpr": round(fpr, 4),
        "failing_drives": int(failing.sum()),
        "healthy_drives": int((~failing).sum()),
    }


def _threshold_for_fpr(frame: pd.DataFrame, proba: npt.NDArray[np.float64], target_fpr: float) -> float:
    """The lowest threshold whose drive-level false-positive rate on ``frame`` stays within target."""
    failing = set(frame.loc[frame["failure"] == 1, "serial_number"])
    peak = pd.Series(proba).groupby(frame["serial_number"].to_numpy()).max()
    healthy = np.sort(peak[~peak.index.isin(failing)].to_numpy())
    if len(healthy) == 0:
        return 0.5
    k = int(np.floor(target_fpr * len(healthy)))  # at most k healthy drives may reach the threshold
    return float(np.nextafter(healthy[len(healthy) - k - 1], np.inf)) if k < len(healthy) else 0.0


def evaluate_backblaze(data: Path, horizon: int, lead: int, target_fpr: float, seed: int) -> dict[str, Any]:
    frame = read_smart_csv(_csv_paths(data))
    features = disk_features(frame)
    labels = label_within(frame, horizon)
    # Drives, not rows, are split: a drive's days are strongly correlated. The threshold is set on
    # validation drives the model never saw, since in-sample probabilities are overconfident.
    serials = frame["serial_number"].unique()
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(serials)
    n_test, n_val = max(1, int(0.3 * len(serials))), max(1, int(0.2 * len(serials)))
    test = frame["serial_number"].isin(set(shuffled[:n_test])).to_numpy()
    val = frame["serial_number"].isin(set(shuffled[n_test : n_test + n_val])).to_numpy()
    train = ~(test | val)

    gbm = GbmModel(horizon_days=horizon, seed=seed).fit(features[train], labels[train])
    val_frame = frame[val].reset_index(drop=True)
    gbm_thr = _threshold_for_fpr(val_frame, gbm.predict_proba(features[val]), target_fpr)
    prior = RulePrior(horizon_days=horizon)
    prior_thr = _threshold_for_fpr(val_frame, prior.predict_proba(features[val]), target_fpr)
    test_frame = frame[test].reset_index(drop=True)
    test_feat = features[test].reset_index(drop=True)
    return {
        "layout": "backblaze",
        "drives": len(serials),
        "rows": len(frame),
        "split": f"by drive serial: 50% train, 20% validation (thresholds), 30% test; seed {seed}",
        "horizon_days": horizon,
        "lead_days": lead,
        "target_fpr": target_fpr,
        "gbm": {"threshold": gbm_thr, **_score(test_frame, gbm.predict_proba(test_feat) >= gbm_thr, horizon, lead)},
        "rule_prior": {
            "threshold": prior_thr,
            **_score(test_frame, prior.predict_proba(test_feat) >= prior_thr, horizon, lead),
        },
        "baseline_smart_5_197_198": _score(test_frame, baseline_rule(test_feat), horizon, lead),
    }


def _read_alibaba(data: Path) -> pd.DataFrame:
    path = data if data.is_file() else sorted(data.rglob("ssd_failure_tag.csv*"))[0]
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".csv") and not n.startswith("__MACOSX"))
            with zf.open(name) as fh:
                return pd.read_csv(fh, low_memory=False)
    return pd.read_csv(path, low_memory=False)


def evaluate_alibaba(data: Path, horizon: int) -> dict[str, Any]:
    tickets = _read_alibaba(data)
    frame = pd.DataFrame(
        {"serial_number": tickets["disk_id"].astype(str), "date": pd.to_datetime(tickets["failure_time"])}
    )
    for a in ATTRIBUTES:
        col = f"r_{a}"
        frame[f"smart_{a}_raw"] = pd.to_numeric(tickets[col], errors="coerce") if col in tickets else np.nan
    frame["failure"] = 1
    with_smart = frame[[f"smart_{a}_raw" for a in ATTRIBUTES]].notna().any(axis=1).to_numpy()
    frame = frame[with_smart].reset_index(drop=True)
    features = disk_features(frame)
    rule = RulePrior(horizon_days=horizon)
    # With no healthy drives there is no threshold to set for a false-positive rate: the prior
    # "flags" a drive when its evidence raises the probability above a clean drive's.
    flagged_prior = rule.predict_proba(features) > rule.clean_probability()
    missing = [a for a in ATTRIBUTES if f"r_{a}" not in tickets]
    return {
        "layout": "alibaba_failure_tickets",
        "tickets": len(tickets),
        "tickets_with_smart": int(with_smart.sum()),
        "attributes_absent": missing,
        "baseline_smart_5_197_198": {"flagged_at_failure": round(float(baseline_rule(features).mean()), 4)},
        "rule_prior": {"flagged_at_failure": round(float(flagged_prior.mean()), 4)},
        "caveat": "failed drives only, one SMART snapshot taken at failure: this is the share of failed drives "
        "each rule flags at failure time; false-positive rate and lead time cannot be measured on this data",
    }


def evaluate(
    data: Path, horizon: int = 30, lead: int = 1, target_fpr: float = 0.01, seed: int = 0, plots: Path | None = None
) -> dict[str, Any]:
    started = time.perf_counter()
    if is_alibaba_tickets(data):
        out = evaluate_alibaba(data, horizon)
    else:
        out = evaluate_backblaze(data, horizon, lead, target_fpr, seed)
    out["seconds"] = round(time.perf_counter() - started, 2)
    if plots is not None:
        _plot(out, plots)
    return out


def _plot(result: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [k for k, v in result.items() if isinstance(v, dict) and ("recall" in v or "flagged_at_failure" in v)]
    values = [result[n].get("recall", result[n].get("flagged_at_failure", 0.0)) for n in names]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, values)
    ax.set_xlim(0, 1)
    ax.set_xlabel("recall of failing drives" if result["layout"] == "backblaze" else "share flagged at failure")
    ax.set_title(f"vigil eval disk ({result['layout']})")
    fig.tight_layout()
    fig.savefig(out_dir / "disk-recall.png", dpi=100)
    plt.close(fig)
