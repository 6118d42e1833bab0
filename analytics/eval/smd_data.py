"""Folders in the SMD layout: ``<name>_train.npy``, ``<name>_test.npy`` (time x metrics) and
``<name>_test_label.npy`` (0/1 per test row) per entity.

OmniAnomaly's SMD (``machine-*``, 1-minute samples), InterFusion's ASD (``omi-*``, 5-minute) and
JumpStarter's Dataset2 (``dataset2-serviceN``, 5-minute, raw unscaled metrics) all come this way.
Entities are discovered from the folder; the sample interval is 60 s for ``machine-*`` and 300 s
otherwise unless given. Metrics are used as stored: the models scale each metric themselves and
treat a metric constant in train as one whose any move is news, so unscaled or constant columns
need no preparation; non-finite values are refused with the file named.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from vigil.analytics.eval.metrics import BoolArray, FloatArray

from vigil.errors import VigilError

SMD_INTERVAL_S = 60.0  # OmniAnomaly: one sample a minute
OTHER_INTERVAL_S = 300.0  # InterFusion's ASD and JumpStarter: one every five minutes
ASD_INTERVAL_S = OTHER_INTERVAL_S
ENDINGS = ("_train.npy", "_test.npy", "_test_label.npy")


class DatasetError(VigilError):
    """The benchmark files are missing or malformed."""


@dataclass(frozen=True, slots=True)
class Machine:
    name: str
    train: FloatArray
    test: FloatArray
    labels: BoolArray
    interval_s: float

    @property
    def dataset(self) -> str:
        """The family the name says: ``machine-1-1`` is SMD, ``omi-1`` ASD, ``dataset2-service0`` dataset2."""
        if self.name.startswith("machine-"):
            return "smd"
        if self.name.startswith("omi-"):
            return "asd"
        return re.split(r"[-_]", self.name, maxsplit=1)[0]


def _natural(name: str) -> tuple[bool, list[int | str]]:
    """SMD first, then by name with numbers compared as numbers (service2 before service10)."""
    parts: list[int | str] = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return (not name.startswith("machine-"), parts)


def machine_names(data_dir: Path) -> list[str]:
    """Every entity with its three files present, SMD first, then in natural name order."""
    names = [p.name.removesuffix(ENDINGS[0]) for p in data_dir.glob(f"*{ENDINGS[0]}")]
    complete = [n for n in names if all((data_dir / f"{n}{end}").exists() for end in ENDINGS[1:])]
    return sorted(complete, key=_natural)


def _load(path: Path) -> FloatArray:
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        loaded: FloatArray = np.load(path, allow_pickle=False).astype(np.float64)
    except ValueError as exc:
        raise DatasetError(f"{path}: not a numeric .npy array ({exc})") from exc
    return loaded


def default_interval(name: str) -> float:
    return SMD_INTERVAL_S if name.startswith("machine-") else OTHER_INTERVAL_S


def load_machine(data_dir: Path, name: str, limit: int | None = None, interval_s: float | None = None) -> Machine:
    """One entity's train, test and labels; ``limit`` keeps the first rows of each (for smoke tests)."""
    train, test = _load(data_dir / f"{name}_train.npy"), _load(data_dir / f"{name}_test.npy")
    labels = _load(data_dir / f"{name}_test_label.npy")
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise DatasetError(f"{name}: train {train.shape} and test {test.shape} must be 2-D with the same metrics")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (len(test),):
        raise DatasetError(f"{name}: {labels.shape[0]} labels for {len(test)} test rows")
    for part, array in (("train", train), ("test", test), ("test_label", labels)):
        if not np.isfinite(array).all():
            raise DatasetError(f"{name}_{part}.npy: non-finite values")
    if len(train) < 100:
        raise DatasetError(f"{name}: {len(train)} train rows, at least 100 are needed to calibrate")
    interval = default_interval(name) if interval_s is None else interval_s
    return Machine(name, train[:limit], test[:limit], labels[:limit] > 0.5, interval)


def halves(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The selection half (every second entity from the first, in the order given) and the other half."""
    return list(names[0::2]), list(names[1::2])
