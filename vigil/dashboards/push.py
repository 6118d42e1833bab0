"""``vigil dashboards push``: the dashboards into a running Grafana through its HTTP API (grafana-client).

Idempotent: the folder is looked up by its uid (the folder title's slug) and created only when missing;
each dashboard is posted with ``overwrite: true`` under its fixed uid, so a second push replaces the
first (Grafana bumps the version) and creates nothing new. With ``datasource_uid`` the dashboards'
``$datasource`` variable defaults to that data source, which must exist and speak PromQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vigil.dashboards.grafana import Json
from vigil.errors import VigilError

if TYPE_CHECKING:
    from grafana_client import GrafanaApi

# Data source types whose query language the dashboards are written in (VictoriaMetrics' own plugin speaks
# MetricsQL, a superset of PromQL).
PROMQL_TYPES = ("prometheus", "victoriametrics-metrics-datasource")
NOT_FOUND = 404


@dataclass(frozen=True)
class Target:
    url: str
    token: str
    folder: str = "Vigil"
    datasource_uid: str | None = None
    timeout_s: float = 10.0


def folder_uid(title: str) -> str:
    """A stable uid for the folder title (Grafana allows 40 characters of [A-Za-z0-9_-])."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return (slug or "vigil")[:40]


def with_datasource(dashboard: Json, uid: str) -> Json:
    """The dashboard with its ``$datasource`` variable set to the data source ``uid``."""
    variables = [
        {**v, "current": {"text": uid, "value": uid}} if v.get("name") == "datasource" else v
        for v in dashboard["templating"]["list"]
    ]
    return {**dashboard, "templating": {**dashboard["templating"], "list": variables}}


def _ensure_folder(api: GrafanaApi, title: str) -> tuple[str, bool]:
    from grafana_client.client import GrafanaClientError

    uid = folder_uid(title)
    try:
        api.folder.get_folder(uid)
        return uid, False
    except GrafanaClientError as exc:
        if exc.status_code != NOT_FOUND:
            raise
    api.folder.create_folder(title, uid=uid)
    return uid, True


def _check_datasource(api: GrafanaApi, uid: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        source: dict[str, Any] = api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as exc:
        if exc.status_code == NOT_FOUND:
            raise VigilError(f"--datasource-uid: Grafana has no data source {uid!r}") from exc
        raise
    if source.get("type") not in PROMQL_TYPES:
        raise VigilError(f"--datasource-uid: {uid!r} is a {source.get('type')} data source, not Prometheus")


def push(target: Target, dashboards: Mapping[str, Json]) -> dict[str, Any]:
    """Push every dashboard into the folder; returns what Grafana answered, per dashboard."""
    import niquests
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(target.url, credential=target.token, timeout=target.timeout_s)
    try:
        version = api.version
        if target.datasource_uid:
            _check_datasource(api, target.datasource_uid)
        uid, created = _ensure_folder(api, target.folder)
        pushed = []
        for name, dashboard in dashboards.items():
            body = with_datasource(dashboard, target.datasource_uid) if target.datasource_uid else dashboard
            answer = api.dashboard.update_dashboard(
                {
                    "dashboard": {**body, "id": None},
                    "folderUid": uid,
                    "overwrite": True,
                    "message": "vigil dashboards push",
                }
            )
            pushed.append(
                {"file": name, "uid": answer.get("uid"), "url": answer.get("url"), "version": answer.get("version")}
            )
    except GrafanaException as exc:
        raise VigilError(f"Grafana at {target.url} answered {exc.status_code}: {exc.message}") from exc
    except niquests.RequestException as exc:  # refused, reset, a name that does not resolve
        raise VigilError(f"Grafana at {target.url} did not answer: {exc}") from exc
    return {"grafana": target.url, "version": version, "folder": {"uid": uid, "created": created}, "dashboards": pushed}
