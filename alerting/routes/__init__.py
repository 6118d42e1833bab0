"""The alerting API's routers beyond the alerts page (``api.py``): incidents and their actions,
silences, receivers' status, approvals, config and tokens. Each route declares the role it needs
(``auth.Requires``); the one interface they share is :class:`~vigil.alerting.routes.context.ApiDeps`.
"""
