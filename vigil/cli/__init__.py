"""The command line and composition root: the only code that wires services together.

Commands: ``up`` (everything on one machine), ``sim``, ``analytics``, ``alerting``, ``agent`` (one
service each, against the configured broker), ``check-config``, ``chaos``, ``bench``, ``eval``,
``train``. Importing this package is cheap, and so is building the command tree: each command
imports its service, and the extra that service needs, when it runs (``extras.py``), so the
base install (``vigil-aiops``, or ``[agent]`` on a GPU node) runs every command it has the
libraries for and names the extra for the others.
"""

from __future__ import annotations


def main() -> None:
    import sys

    from prometheus_client import disable_created_metrics

    # prometheus-client gives every counter and histogram a second series, ``<name>_created`` (when
    # it was made): twice the series for a figure no dashboard reads. Off for the whole process,
    # so every /metrics is exactly the catalog (vigil.metrics_catalog).
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus-client

    from vigil.cli.app import build_app
    from vigil.cli.extras import EXIT_NOT_INSTALLED, missing_extra

    try:
        build_app("agent" if sys.argv[1:2] == ["agent"] else None)(prog_name="vigil")
    except ModuleNotFoundError as exc:
        message = missing_extra(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)  # noqa: T201 - the command's one-line error
        sys.exit(EXIT_NOT_INSTALLED)
