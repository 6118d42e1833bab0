"""The command line and composition root: the only code that wires services together.

Commands: ``up`` (everything on one machine), ``sim``, ``analytics``, ``alerting`` (one service
each, against the configured broker), ``check-config``, ``bench``. Importing this package is
cheap; the commands and the services they wire are imported when ``main`` runs.
"""

from __future__ import annotations


def main() -> None:
    from vigil.cli.app import build_app

    build_app()()
