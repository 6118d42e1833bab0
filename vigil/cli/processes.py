"""Child processes of ``vigil up``: started with their own log files, stopped by PID, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from vigil.config import without_env_overrides
from vigil.files import CHILD_UMASK, open_private_append


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def child_environment() -> dict[str, str]:
    """Our environment less its ``VIGIL_*`` config overrides: a child reads the effective config its
    parent wrote, which holds them already (and may have replaced one, as the embedded broker's
    address replaces an empty ``kafka.bootstrap_servers``)."""
    from vigil.cli.settings import VigilConfig

    return without_env_overrides(VigilConfig, os.environ)


class ProcessGroup:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    def spawn(self, name: str, args: list[str]) -> Child:
        """Start ``python -m vigil.cli ARGS`` in its own session, so a terminal Ctrl-C reaches only us;
        its log is private and so is everything it creates (umask 077)."""
        log_path = self.log_dir / f"{name}.log"
        with os.fdopen(open_private_append(log_path), "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vigil.cli", *args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                umask=CHILD_UMASK,
                env=child_environment(),
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


def child_pids() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


def reap_children(existing: set[int], timeout_s: float = 10.0) -> None:
    """Terminate, then kill, the child processes of this one that are not in ``existing`` (those
    that ran before a start): the safety net after an interrupted start, for a signal that came
    between spawning a process and recording its PID."""
    children = [child for child in psutil.Process().children() if child.pid not in existing]
    for child in children:
        child.terminate()
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        child.kill()
