"""The command line and composition root: the only code that wires services together.

Commands: ``up`` (everything on one machine), ``sim``, ``analytics``, ``alerting`` (one service
each, against the configured broker), ``check-config``, ``bench``. Importing this package is
cheap; the commands and the services they wire are imported when ``main`` runs.
"""

from __future__ import annotations


def main() -> None:
    import sys

    if sys.argv[1:2] == ["agent"]:
        # The node agent runs on every GPU node: build its command alone, so it never imports the
        # other services and their dependencies (FastAPI, scikit-learn, ...) as the full app does.
        from vigil.cli.agent import agent_app

        agent_app()(args=sys.argv[2:], prog_name="vigil agent")
        return
    from vigil.cli.app import build_app

    build_app()()
