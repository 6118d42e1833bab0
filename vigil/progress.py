"""Progress of long work (a benchmark, an evaluation, training a model), told by the code doing it
to whoever shows it: the command line draws it on a terminal (``vigil.cli.progress``), everything
else passes :class:`Silent`. The library code stays free of any display."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def phase(self, name: str, total: float | None = None) -> None:
        """A new phase of ``total`` units (None: not known), replacing the one before."""

    def advance(self, units: float = 1.0, figures: str | None = None) -> None:
        """``units`` more done in this phase; ``figures``: what it has measured so far, one short line."""


class Silent:
    """No display: the default wherever no one is watching."""

    def phase(self, name: str, total: float | None = None) -> None:
        return None

    def advance(self, units: float = 1.0, figures: str | None = None) -> None:
        return None
