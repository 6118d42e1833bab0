"""Where the shared public datasets are: ``$VIGIL_DATASETS``, else ``../shared/datasets`` beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_root() -> Path:
    """The datasets folder, or skip the calling test cleanly when it is absent."""
    root = Path(os.environ.get("VIGIL_DATASETS") or REPO.parent / "shared" / "datasets")
    if not root.is_dir():
        pytest.skip(f"shared datasets not present at {root} (set VIGIL_DATASETS)")
    return root
