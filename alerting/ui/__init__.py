"""The web UI, served by the alerting process itself: server-rendered pages (Jinja2 templates in
``templates/``, no JavaScript, no build step) for incidents, silences, pending approvals and
receivers. ``routes.ui_router`` is its one entry point; it calls the same service layer and role
checks as the API (``vigil.alerting.routes``), and a browser logs in with a token kept in an
HttpOnly, SameSite=Strict cookie (``vigil.alerting.auth``).
"""
