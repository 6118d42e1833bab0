"""The command line and composition root: the only code that wires services together.

Commands: ``up`` (everything on one machine), ``sim``, ``analytics``, ``alerting`` (one service
each, against the configured broker), ``check-config``, ``bench``. Importing this package is
cheap; the commands and the services they wire are imported when ``main`` runs.
"""

from __future__ import annotations


def main() -> None:
    import sys

    from prometheus_client import disable_created_metrics

    # prometheus-client gives every counter and histogram a second series, ``<name>_created`` (when
    # it was made): twice the series for a figure no dashboard reads. Off for the whole process,
    # so every /metrics is exactly the catalog (vigil.metrics_catalog).
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus-client

    if sys.argv[1:2] == ["agent"]:
        # The node agent runs on every GPU node: build its command alone, so it never imports the
        # other services and their dependencies (FastAPI, scikit-learn, ...) as the full app does.
        from vigil.cli.agent import agent_app

        agent_app()(args=sys.argv[2:], prog_name="vigil agent")
        return
    from vigil.cli.app import build_app

    build_app()()
