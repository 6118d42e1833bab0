"""``vigil dashboards push``: the dashboards into a running Grafana through its HTTP API (grafana-client).

Idempotent: the folder is looked up by its uid (the folder title's slug) and created only when missing;
each dashboard is posted with ``overwrite: true`` under its fixed uid, so a second push replaces the
first (Grafana bumps the version) and creates nothing new. With ``datasource_uid`` the dashboards'
``$datasource`` variable defaults to that data source, which must exist and speak PromQL; with
``prometheus_url`` that data source (``vigil-prometheus`` unless named) is created, or its URL updated,
first.
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
DEFAULT_DATASOURCE_UID = "vigil-prometheus"  # the uid the provisioning file gives it too


@dataclass(frozen=True)
class Target:
    url: str
    token: str
    folder: str = "Vigil"
    datasource_uid: str | None = None
    prometheus_url: str | None = None
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


def _ensure_datasource(api: GrafanaApi, uid: str, url: str) -> str:
    """A Prometheus data source ``uid`` querying ``url``: created, updated (another URL) or unchanged."""
    from grafana_client.client import GrafanaClientError

    try:
        found: dict[str, Any] = api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as exc:
        if exc.status_code != NOT_FOUND:
            raise
        body = {"uid": uid, "name": f"Vigil {uid}", "type": "prometheus", "access": "proxy", "url": url}
        api.datasource.create_datasource({**body, "jsonData": {"timeInterval": "15s"}})
        return "created"
    if found.get("type") not in PROMQL_TYPES:
        raise VigilError(f"data source {uid!r} is a {found.get('type')} data source, not Prometheus")
    if found.get("url") == url:
        return "unchanged"
    api.datasource.update_datasource_by_uid(uid, {**found, "url": url})
    return "updated"


def _post(api: GrafanaApi, folder: str, name: str, dashboard: Json) -> dict[str, Any]:
    """One dashboard into the folder, replacing the one of the same uid (``id: None``: matched by uid)."""
    body = {"dashboard": {**dashboard, "id": None}, "folderUid": folder, "overwrite": True}
    answer: dict[str, Any] = api.dashboard.update_dashboard({**body, "message": "vigil dashboards push"})
    return {"file": name, "uid": answer.get("uid"), "url": answer.get("url"), "version": answer.get("version")}


def push(target: Target, dashboards: Mapping[str, Json]) -> dict[str, Any]:
    """Push every dashboard into the folder; returns what Grafana answered, per dashboard."""
    import niquests
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(target.url, credential=target.token, timeout=target.timeout_s)
    try:
        version = api.version
        source, made = target.datasource_uid, None
        if target.prometheus_url:
            source = source or DEFAULT_DATASOURCE_UID
            made = _ensure_datasource(api, source, target.prometheus_url)
        elif source:
            _check_datasource(api, source)
        uid, created = _ensure_folder(api, target.folder)
        pushed = [_post(api, uid, n, with_datasource(d, source) if source else d) for n, d in dashboards.items()]
    except GrafanaException as exc:
        raise VigilError(f"Grafana at {target.url} answered {exc.status_code}: {exc.message}") from exc
    except niquests.RequestException as exc:  # refused, reset, a name that does not resolve
        raise VigilError(f"Grafana at {target.url} did not answer: {exc}") from exc
    return {
        "grafana": target.url,
        "version": version,
        "datasource": {"uid": source, "made": made} if source else None,
        "folder": {"uid": uid, "created": created},
        "dashboards": pushed,
    }
