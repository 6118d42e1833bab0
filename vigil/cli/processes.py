"""Child processes of ``vigil up``: started with their own log files, stopped by PID, in order."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


class ProcessGroup:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    def spawn(self, name: str, args: list[str]) -> Child:
        """Start ``python -m vigil.cli ARGS`` in its own session, so a terminal Ctrl-C reaches only us."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vigil.cli", *args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, proc, log_path)
        self.children[name] = child
        return child

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.proc.poll() is None

    def describe_exit(self, name: str) -> str:
        """How the child ended (``killed by SIGKILL``, ``exit 1``) and where its log is; "" while it runs."""
        child = self.children.get(name)
        code = child.proc.poll() if child is not None else None
        if child is None or code is None:
            return ""
        how = f"exit {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
        return f"{how}, log {child.log_path}"

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: used by failure tests."""
        child = self.children[name]
        child.proc.kill()
        child.proc.wait(10)

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        child = self.children.pop(name, None)
        if child is None:
            return None
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(timeout_s)
        return child.proc.returncode

    def stop_all(self, order: list[str]) -> None:
        for name in order + [n for n in list(self.children) if n not in order]:
            self.stop(name)
