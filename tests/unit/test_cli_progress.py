"""The one progress helper: drawn (phase, bar, time left, figures) on a terminal, never with --json
or when stdout is not a terminal; libraries report to it through the kernel protocol."""

from __future__ import annotations

import io

from rich.console import Console

from vigil.cli.progress import progress, shown
from vigil.progress import Silent


def test_shown_only_on_a_terminal_without_json() -> None:
    assert shown(False, stdout_is_terminal=True)
    assert not shown(True, stdout_is_terminal=True)
    assert not shown(False, stdout_is_terminal=False)


def test_phases_and_figures_are_drawn_on_the_console() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    with progress(False, console, stdout_is_terminal=True) as bar:
        assert not isinstance(bar, Silent)
        bar.phase("scoring 3 entities", 3)
        for done in range(1, 4):
            bar.advance(1, f"{done} scored, mean F1 0.{done}")
        bar.phase("plots")
        bar.advance()
    text = out.getvalue()
    assert "scoring 3 entities" in text and "3 scored, mean F1 0.3" in text and "plots" in text
    assert "100%" in text and "left" in text


def test_nothing_is_drawn_for_json_or_a_pipe() -> None:
    out = io.StringIO()
    for as_json, terminal in ((True, True), (False, False)):
        with progress(as_json, Console(file=out, force_terminal=True), stdout_is_terminal=terminal) as bar:
            assert isinstance(bar, Silent)
            bar.phase("x", 1)
            bar.advance(1, "y")
    assert out.getvalue() == ""
