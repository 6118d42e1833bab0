"""Reading the NAB corpus (58 series, their labelled windows, the cost profiles) and its published results."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from vigil.analytics.eval.nab_scoring import PROFILES, FileLayout, FloatArray, Profile, layout

TimeArray = npt.NDArray[np.datetime64]
SUBSETS = ("all", "odd", "even")


class CorpusError(ValueError):
    """The NAB folder is missing or malformed; the message names the file."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str  # the path relative to data/, e.g. "realKnownCause/nyc_taxi.csv" (NAB's key)
    timestamps: TimeArray
    values: FloatArray
    layout: FileLayout


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CorpusError(f"{path}: not found (is this a NAB checkout?)") from exc
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path}: not JSON: {exc}") from exc


def read_series_csv(path: Path) -> tuple[TimeArray, FloatArray]:
    """A NAB data file: a ``timestamp,value`` header and one row per record."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError as exc:
        raise CorpusError(f"{path}: not found") from exc
    if not rows or [c.strip() for c in rows[0][:2]] != ["timestamp", "value"]:
        raise CorpusError(f"{path}: expected a 'timestamp,value' header")
    try:
        stamps = np.array([r[0] for r in rows[1:]], dtype="datetime64[us]")
        values = np.array([float(r[1]) for r in rows[1:]], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise CorpusError(f"{path}: bad row: {exc}") from exc
    return stamps, values


def window_indices(stamps: TimeArray, windows: Sequence[Sequence[str]], name: str) -> list[tuple[int, int]]:
    """Inclusive record indices of label windows given as (start, end) timestamps.

    Like NAB, records are scored by position, not time (some files repeat or step back an hour
    where clocks changed), and a window edge is the first record carrying that exact timestamp.
    """
    out = []
    for start, end in windows:
        edges = []
        for edge in (start, end):
            hits = np.flatnonzero(stamps == np.datetime64(edge, "us"))
            if not hits.size:
                raise CorpusError(f"{name}: window edge {edge} is not the timestamp of any record")
            edges.append(int(hits[0]))
        if edges[0] > edges[1]:
            raise CorpusError(f"{name}: window [{start}, {end}] ends before it starts")
        out.append((edges[0], edges[1]))
    return out


def load_profiles(root: Path) -> tuple[Profile, ...]:
    """The cost profiles from ``config/profiles.json``; NAB's defaults when the file is absent."""
    path = root / "config" / "profiles.json"
    if not path.exists():
        return PROFILES
    raw = _read_json(path)
    known = [p.name for p in PROFILES]
    ordered = sorted(raw, key=lambda name: known.index(name) if name in known else len(known))
    try:
        profiles = tuple(
            Profile(name, *(float(raw[name]["CostMatrix"][k]) for k in ("tpWeight", "fpWeight", "fnWeight")))
            for name in ordered
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorpusError(f"{path}: a profile lacks CostMatrix tpWeight/fpWeight/fnWeight ({exc})") from exc
    return profiles


def select(names: Sequence[str], subset: str) -> list[str]:
    """``odd``/``even``: every other file of the sorted list (index 1, 3, ... or 0, 2, ...)."""
    if subset not in SUBSETS:
        raise CorpusError(f"subset must be one of {', '.join(SUBSETS)}, not {subset!r}")
    ordered = sorted(names)
    if subset == "all":
        return ordered
    return ordered[1::2] if subset == "odd" else ordered[0::2]


def load_corpus(root: Path, subset: str = "all", names: Sequence[str] | None = None) -> list[Series]:
    """The labelled series of ``labels/combined_windows.json`` (all 58, or a subset)."""
    windows = _read_json(root / "labels" / "combined_windows.json")
    if not isinstance(windows, dict) or not windows:
        raise CorpusError(f"{root / 'labels' / 'combined_windows.json'}: expected a non-empty object")
    chosen = list(names) if names is not None else select(list(windows), subset)
    out = []
    for name in chosen:
        if name not in windows:
            raise CorpusError(f"{name}: not in labels/combined_windows.json")
        stamps, values = read_series_csv(root / "data" / name)
        idx = window_indices(stamps, windows[name], name)
        try:
            lay = layout(len(values), idx)
        except ValueError as exc:
            raise CorpusError(f"{name}: {exc}") from exc
        out.append(Series(name, stamps, values, lay))
    return out


def scoreboard(root: Path) -> dict[str, dict[str, float]]:
    """Published normalised scores per detector and profile (``results/final_results.json``)."""
    path = root / "results" / "final_results.json"
    if not path.exists():
        return {}
    raw = _read_json(path)
    return {det: {prof: float(v) for prof, v in scores.items()} for det, scores in raw.items()}
