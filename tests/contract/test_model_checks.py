"""Every registered model passes the library's conformance checks (``vigil.analytics.models.checks``).

Parametrised over the registry and over the checks that apply to each model, so a model added to
``registry.MODELS`` is checked without touching this file, with its own ``test_options()``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from vigil.analytics.models import checks, registry
from vigil.analytics.models.base import Detector

CASES: list[tuple[str, Callable[[], None]]] = [
    (name, check) for name in registry.names() for check in checks.yield_checks(registry.model_class(name))
]


@pytest.mark.parametrize("name", registry.names())
def test_registry_entry_is_a_detector_named_as_registered(name: str) -> None:
    cls = registry.model_class(name)
    assert issubclass(cls, Detector) and cls.name == name
    assert isinstance(cls.version, int)
    assert isinstance(cls.test_options(), dict)


def test_every_model_has_the_checks_of_its_form() -> None:
    names = {name for name, _ in CASES}
    assert names == set(registry.names())  # autoencoder included: it used to be missing from the table
    assert {check.__name__ for name, check in CASES if name == "robust_z"} >= {
        "check_snapshot_restores_the_same_scores",
        "check_bank_agrees_with_single_models",
    }


@pytest.mark.parametrize(("name", "check"), CASES, ids=[f"{n}-{c.__name__.removeprefix('check_')}" for n, c in CASES])
def test_model_passes_check(name: str, check: Callable[[], None]) -> None:
    check()
