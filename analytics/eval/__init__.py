"""Offline evaluation of the detector library on public labelled benchmarks (``vigil eval ...``)."""

from __future__ import annotations

import os
from pathlib import Path


def datasets_root() -> Path:
    """Where the public data sets live: ``$VIGIL_DATASETS``, else the first ``shared/datasets`` folder
    beside the repository or one level further up (a git worktree sits one folder deeper)."""
    env = os.environ.get("VIGIL_DATASETS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for base in (repo.parent, repo.parent.parent):
        candidate = base / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "datasets"
