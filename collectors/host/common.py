"""What the host collectors share: running a tool with a deadline, and label values a series key can hold."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from vigil.collectors.base import Problem

# Series keys are ``metric{a="x",b="y"}`` and split on commas and quotes (vigil.events.parse_series_key).
_UNSAFE = re.compile(r'[",{}\\=\s]+')


def label_value(text: str) -> str:
    """``megaraid,0`` -> ``megaraid_0``; whitespace, quotes, commas, braces, backslashes become ``_``."""
    return _UNSAFE.sub("_", text.strip()).strip("_") or "_"


def sensor_name(text: str) -> str:
    """An SDR or sensor name as a label: ``CPU 1 Temp`` -> ``cpu_1_temp``."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_") or "_"


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run(argv: Sequence[str], timeout: float) -> Completed | Problem:
    """Run a tool; a missing binary, a timeout or a refusal is a Problem, never an exception."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except FileNotFoundError:
        return Problem("missing_binary", f"{argv[0]} not found")
    except subprocess.TimeoutExpired:
        return Problem("timeout", f"{' '.join(argv)} took more than {timeout:g}s")
    except PermissionError:
        return Problem("permission", f"{argv[0]} is not executable")
    except OSError as exc:
        return Problem("spawn", f"{argv[0]}: {exc.strerror}")
    return Completed(done.returncode, done.stdout, done.stderr)


def last_words(text: str, limit: int = 200) -> str:
    """The end of a tool's stderr, on one line, for a Problem's detail."""
    return " ".join(text.split())[-limit:]
