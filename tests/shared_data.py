"""The shared public datasets for tests: where :func:`vigil.analytics.eval.datasets_root` finds them,
or a clean skip when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from vigil.analytics.eval import datasets_root as _root


def datasets_root() -> Path:
    """The datasets folder, or skip the calling test cleanly when it is absent."""
    root = _root()
    if not root.is_dir():
        pytest.skip(f"shared datasets not present at {root} (set VIGIL_DATASETS)")
    return root
