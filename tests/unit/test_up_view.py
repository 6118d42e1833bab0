"""The live view of ``vigil up`` says what supervision did: each unit's state and restarts."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from rich.console import Console

from vigil.cli.settings import VigilConfig
from vigil.cli.stack import Stack
from vigil.cli.supervisor import SupervisionConfig, Supervisor
from vigil.cli.up import _services


def test_the_services_table_shows_state_restarts_and_the_last_events(tmp_path: Path) -> None:
    stack = Stack(VigilConfig.model_validate({"data_dir": str(tmp_path)}))
    now = [0.0]
    stack.supervisor = Supervisor(SupervisionConfig(), lambda: now[0])
    running = {"broker": True, "sim": False}
    stack.supervisor.watch("broker", lambda: running["broker"], lambda: None)
    stack.supervisor.watch("sim", lambda: running["sim"], lambda: running.update(sim=True))
    recent = deque(str(e) for e in stack.supervise())
    console = Console(record=True, width=120)
    console.print(_services(stack, recent))
    text = console.export_text()
    assert "broker" in text and "up" in text
    assert "sim" in text and "restarting in 1s" in text
    assert "sim died: restart in 1s" in " ".join(text.split())  # the event lines under the table
    now[0] = 1.0
    recent.extend(str(e) for e in stack.supervise())
    console = Console(record=True, width=120)
    console.print(_services(stack, recent))
    text = console.export_text()
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ")}
    assert "up" in rows["sim"] and rows["sim"].split()[-2] == "1"  # one restart
    assert "sim restarted: restart #1 after 1s" in " ".join(text.split())
