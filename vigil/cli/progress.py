"""The one progress display of every long command (``bench *``, ``eval *``, ``train disk``,
``up --report``): on stderr, and only while stdout is a terminal and ``--json`` was not given, so
piped or machine-read output never carries it. Each phase shows its name, a bar when its size is
known, time spent and time left, and the figures measured so far."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichBar

from vigil.progress import Progress, Silent


class TerminalProgress:
    """:class:`vigil.progress.Progress` drawn by rich: one line per phase, the current one moving."""

    def __init__(self, bar: RichBar) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def phase(self, name: str, total: float | None = None) -> None:
        self._finish()
        self._task = self._bar.add_task(name, total=total, figures="")

    def advance(self, units: float = 1.0, figures: str | None = None) -> None:
        if self._task is None:
            self.phase("working")
        assert self._task is not None
        if figures is None:
            self._bar.update(self._task, advance=units)
        else:
            self._bar.update(self._task, advance=units, figures=figures)

    def _finish(self) -> None:
        if self._task is not None:
            task = self._bar.tasks[self._task]
            if task.total is not None:
                self._bar.update(self._task, completed=task.total)
            self._bar.stop_task(self._task)


def shown(as_json: bool, stdout_is_terminal: bool | None = None) -> bool:
    """Whether to draw progress: a person watches stdout, and it is not carrying JSON."""
    terminal = sys.stdout.isatty() if stdout_is_terminal is None else stdout_is_terminal
    return terminal and not as_json


@contextmanager
def progress(
    as_json: bool, console: Console | None = None, stdout_is_terminal: bool | None = None
) -> Iterator[Progress]:
    """The progress of one command run: drawn on stderr (``console``) when :func:`shown`, else silent."""
    if not shown(as_json, stdout_is_terminal):
        yield Silent()
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[figures]}"),
    )
    with RichBar(*columns, console=console or Console(stderr=True)) as bar:
        shown_progress = TerminalProgress(bar)
        try:
            yield shown_progress
        finally:
            shown_progress._finish()
