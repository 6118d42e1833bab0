"""Canary inference checks: golden questions asked of deployed models, judged against a baseline.

Probe definitions are YAML data (``probe.schema.json``, ``golden.schema.json``; :mod:`.spec`). Each
round sends a probe's golden items to each of its arms (model versions, deployments or serving
nodes) over the model server's protocol (:mod:`.clients`: Open Inference Protocol v2,
OpenAI-compatible, plain HTTP JSON), checks every answer (:mod:`.checks`) and publishes the round
as a ``ProbeResult``. The judge (:mod:`.judge`, pure) compares windows of rounds statistically;
a failed judgement becomes a ``Detection``, so it opens an incident through alerting's intake like
any detector, and the canary runbooks roll the model back or take the node out of serving.

The one interface is :class:`~vigil.alerting.canary.service.CanaryService` (``round_now``,
``run(stop)``, ``health``), configured by :class:`~vigil.alerting.canary.config.CanaryConfig`.
"""
