"""Remediation: runbooks as data, a pure planner, guards, a durable executor and an audit log.

Remediation is one more receiver of the incident engine (a notifier of type ``remediation``): it is
told about incidents through the same routing, silences and maintenance windows as a person, so a
silence also stops the robot. For each incident it picks a runbook (the XID policy first, then the
runbooks' ``match``), plans it (``planner.plan``: pure, so dry-run is free), records the plan in the
incident's timeline and, in ``execute`` mode, runs it step by step with its state in the alerting
store, so a restart resumes without repeating a step.

The one interface is :class:`~vigil.alerting.runbooks.actions.base.Action` (the action plugins);
runbooks are :class:`~vigil.alerting.runbooks.model.Runbook` values loaded from YAML validated by
``runbook.schema.json``.
"""
