"""The incident engine's pipeline: small stages built in one function (``build.py``), Alertmanager's
shape. The one interface is :class:`~vigil.alerting.pipeline.base.Stage` (``run(batch) -> candidates``);
silences, maintenance windows and inhibition mute through one
:class:`~vigil.alerting.pipeline.base.Muter`.
"""
