"""The real captured GPU tool output (public datasets) for tests, and a fake ``nvidia-smi`` replaying it.

The datasets are found where :func:`vigil.analytics.eval.datasets_root` finds them (``VIGIL_DATASETS``);
tests skip cleanly when they are absent. Nothing is copied. The ``-q -x`` (XML) reports are
synthesized and kept in ``tests/fixtures/nvidia-smi`` (its README says how).

Run as a program, this file is the fake ``nvidia-smi``: it answers ``--query-gpu=<fields>
--format=csv[,noheader][,nounits]`` by projecting the requested columns out of a capture's recorded
CSV (rejecting a field the capture's driver does not list, with nvidia-smi's own message and exit
code 2), ``-q -x`` with the XML report it was given and ``-q`` with the recorded text report, so the
collector's real subprocess path runs against real driver output. Stdlib only: it runs under any Python.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SECTION = re.compile(r"^# (\w[\w-]*) :: (.+?)\s*$")
_ALIAS = re.compile(r'^"([^"]+)" or "([^"]+)"')
_UNIT = re.compile(r"^(.*?)\s*\[(.+)\]$")


def datasets_dir() -> Path | None:
    env = os.environ.get("VIGIL_DATASETS")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "datasets", REPO.parents[1] / "shared" / "datasets"]
    return next((p for p in candidates if (p / "fixtures").is_dir()), None)


def fixtures_dir(name: str) -> Path | None:
    root = datasets_dir()
    return root / "fixtures" / name if root else None


def smi_xml_reports() -> list[Path]:
    """The synthesized ``nvidia-smi -q -x`` reports kept in the repository (their README says how)."""
    return sorted((REPO / "tests" / "fixtures" / "nvidia-smi").glob("*.xml"))


def smi_xml(part: str) -> Path:
    (path,) = [p for p in smi_xml_reports() if part in p.name]
    return path


def smi_captures() -> list[Path]:
    folder = fixtures_dir("nvidia-smi")
    return sorted(p for p in folder.glob("*__*.txt")) if folder else []


def capture_sections(path: Path) -> dict[tuple[str, str], str]:
    """``{(state, section name): text}`` of one capture file (``("load", "query (-q)")``...)."""
    sections: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#####") and i + 1 < len(lines) and _SECTION.match(lines[i + 1]):
            match = _SECTION.match(lines[i + 1])
            assert match is not None
            current = sections.setdefault((match.group(1), match.group(2)), [])
            i += 2
            while i < len(lines) and lines[i].startswith("#"):  # the "# $ command" line and the closing rule
                i += 1
            continue
        if current is not None:
            current.append(line)
        i += 1
    return {key: "\n".join(text).strip("\n") + "\n" for key, text in sections.items()}


def capture_csv(sections: dict[tuple[str, str], str], state: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, data rows) of a capture's recorded ``--query-gpu`` CSV."""
    text = sections[(state, "query-gpu (csv, what the exporter parses)")]
    rows = [[cell.strip() for cell in line.split(", ")] for line in text.splitlines() if line.strip()]
    return rows[0], rows[1:]


def _aliases(sections: dict[tuple[str, str], str]) -> dict[str, str]:
    """Both spellings of a field the capture's ``--help-query-gpu`` lists as ``"a" or "b"``."""
    out: dict[str, str] = {}
    for line in sections.get(("capabilities", "help-query-gpu"), "").splitlines():
        match = _ALIAS.match(line)
        if match:
            a, b = match.groups()
            out[a], out[b] = b, a
    return out


def split_unit(header: str) -> tuple[str, str]:
    match = _UNIT.match(header)
    return (match.group(1), match.group(2)) if match else (header, "")


def fake_main(argv: list[str]) -> int:
    if "-q" in argv and "-x" in argv:
        xml = os.environ.get("FAKE_SMI_XML")
        if not xml:
            sys.stdout.write("Unable to determine the device handle: no XML report recorded for this capture\n")
            return 15
        sys.stdout.write(Path(xml).read_text())
        return 0
    capture = Path(os.environ["FAKE_SMI_CAPTURE"])
    state = os.environ.get("FAKE_SMI_STATE", "load")
    sections = capture_sections(capture)
    if "-q" in argv:
        sys.stdout.write(sections[(state, "query (-q)")])
        return 0
    query = next((a.split("=", 1)[1] for a in argv if a.startswith("--query-gpu=")), None)
    fmt = next((a.split("=", 1)[1] for a in argv if a.startswith("--format=")), "csv")
    if query is None:
        sys.stdout.write(sections[(state, "nvidia-smi (default table)")])
        return 0
    if os.environ.get("FAKE_SMI_FAIL_QUERY"):
        sys.stdout.write("Failed to initialize NVML: Unknown Error\n")
        return 255
    header, rows = capture_csv(sections, state)
    names = [split_unit(h) for h in header]
    column = {name: i for i, (name, _unit) in enumerate(names)}
    aliases = _aliases(sections)
    picked = []
    for field in query.split(","):
        index = column.get(field, column.get(aliases.get(field, ""), -1))
        if index < 0:
            sys.stdout.write(f'Field "{field}" is not a valid field to query.\n\n')
            return 2
        picked.append(index)
    nounits = "nounits" in fmt
    out = [] if "noheader" in fmt else [", ".join(header[i] if not nounits else names[i][0] for i in picked)]
    for row in rows:
        cells = [row[i] for i in picked]
        if nounits:
            cells = [_strip_unit(cell, names[i][1]) for cell, i in zip(cells, picked, strict=True)]
        out.append(", ".join(cells))
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _strip_unit(cell: str, unit: str) -> str:
    return cell[: -len(unit) - 1] if unit and cell.endswith(" " + unit) else cell


def fake_smi(
    folder: Path, capture: Path, state: str = "load", fail_query: bool = False, xml: Path | None = None
) -> Path:
    """An executable ``nvidia-smi`` in ``folder`` that replays ``capture`` (see the module docstring),
    and answers ``-q -x`` with ``xml``."""
    script = folder / "nvidia-smi"
    env = f"FAKE_SMI_CAPTURE={str(capture)!r} FAKE_SMI_STATE={state}" + (" FAKE_SMI_FAIL_QUERY=1" if fail_query else "")
    env += f" FAKE_SMI_XML={str(xml)!r}" if xml else ""
    script.write_text(f'#!/bin/sh\n{env} exec {sys.executable} {str(Path(__file__).resolve())!r} "$@"\n')
    script.chmod(0o755)
    return script


if __name__ == "__main__":
    raise SystemExit(fake_main(sys.argv[1:]))
