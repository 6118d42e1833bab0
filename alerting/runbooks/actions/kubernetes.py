"""Kubernetes actions with the official client: cordon, taint, drain through the Eviction API, uncordon.

- ``kubernetes.cordon {node}``: a strategic-merge patch ``{"spec": {"unschedulable": true}}``.
- ``kubernetes.taint {node, reason}``: adds ``<taint_key>=<reason>:NoSchedule`` (the key is config,
  ``vigil.io/gpu-unhealthy`` by default: Kubernetes has no standard one). ``spec.taints`` has no merge
  key, so the whole list is sent, with the node's ``resourceVersion`` so a concurrent change makes the
  API answer 409 (retried) instead of being overwritten.
- ``kubernetes.drain {node, reason}``: cordon, taint, then one ``policy/v1`` Eviction per pod on the
  node (DaemonSet, mirror and finished pods are left, as ``kubectl drain`` does), then a wait until
  the evicted pods are gone. An eviction a PodDisruptionBudget refuses answers 429: it is retried
  with backoff until the step's deadline, never forced with a delete; 404 means the pod is gone
  already. Destructive: evicting pods stops work.
- ``kubernetes.uncordon {node}``: removes our taint and sets ``unschedulable`` false.

The client is configured from a kubeconfig file or in-cluster (``remediation.kubernetes``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from vigil.alerting.runbooks.actions.base import NODE, REASON, ActionResult, Params, params_schema

STRATEGIC = "application/strategic-merge-patch+json"


def _failure(what: str, exc: ApiException) -> ActionResult:
    status = int(exc.status or 0)
    retryable = status in (0, 409, 429) or status >= 500
    return ActionResult.failed(f"{what}: HTTP {status} {exc.reason}", retryable=retryable)


class _NodeAction:
    target: str | None = "node"

    def __init__(self, api: client.ApiClient, taint_key: str = "vigil.io/gpu-unhealthy") -> None:
        self.core = client.CoreV1Api(api)
        self.taint_key = taint_key

    def _node(self, name: str) -> Any:
        return self.core.read_node(name)

    def _patch(self, name: str, body: dict[str, Any]) -> None:
        self.core.patch_node(name, body, _content_type=STRATEGIC)

    def _ours(self, node: Any) -> Any:
        return next((t for t in node.spec.taints or [] if t.key == self.taint_key), None)

    def _set_taints(self, node: Any, taints: list[dict[str, Any]]) -> None:
        body = {"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}}
        self._patch(node.metadata.name, body)


def _taint_json(taint: Any) -> dict[str, Any]:
    out = {"key": taint.key, "effect": taint.effect}
    if taint.value is not None:
        out["value"] = taint.value
    return out


class Cordon(_NodeAction):
    name = "kubernetes.cordon"
    schema = params_schema({"node": NODE}, {"reason": REASON})
    destructive = False
    undo: str | None = "kubernetes.uncordon"

    def check(self, params: Params, idempotency_key: str) -> bool:
        return bool(self._node(params["node"]).spec.unschedulable)

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        try:
            self._patch(params["node"], {"spec": {"unschedulable": True}})
        except ApiException as exc:
            return _failure("cordon", exc)
        return ActionResult.done(f"cordoned {params['node']}")

    def verify(self, params: Params) -> ActionResult:
        ok = self.check(params, "")
        return ActionResult(ok, "unschedulable" if ok else "still schedulable")


class Taint(_NodeAction):
    name = "kubernetes.taint"
    schema = params_schema({"node": NODE, "reason": REASON})
    destructive = False
    undo: str | None = "kubernetes.uncordon"

    def check(self, params: Params, idempotency_key: str) -> bool:
        return self._ours(self._node(params["node"])) is not None

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        try:
            node = self._node(params["node"])
            if self._ours(node) is None:
                value = _label_value(params["reason"])
                taints = [_taint_json(t) for t in node.spec.taints or []]
                self._set_taints(node, [*taints, {"key": self.taint_key, "value": value, "effect": "NoSchedule"}])
        except ApiException as exc:
            return _failure("taint", exc)
        return ActionResult.done(f"tainted {params['node']} {self.taint_key}:NoSchedule")

    def verify(self, params: Params) -> ActionResult:
        ok = self.check(params, "")
        return ActionResult(ok, "tainted" if ok else "taint missing")


class Uncordon(_NodeAction):
    name = "kubernetes.uncordon"
    schema = params_schema({"node": NODE}, {"reason": REASON})
    destructive = False
    undo: str | None = None

    def check(self, params: Params, idempotency_key: str) -> bool:
        node = self._node(params["node"])
        return not node.spec.unschedulable and self._ours(node) is None

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        try:
            node = self._node(params["node"])
            if self._ours(node) is not None:
                self._set_taints(node, [_taint_json(t) for t in node.spec.taints or [] if t.key != self.taint_key])
            if node.spec.unschedulable:
                self._patch(params["node"], {"spec": {"unschedulable": False}})
        except ApiException as exc:
            return _failure("uncordon", exc)
        return ActionResult.done(f"uncordoned {params['node']}")

    def verify(self, params: Params) -> ActionResult:
        ok = self.check(params, "")
        return ActionResult(ok, "schedulable" if ok else "still cordoned or tainted")


class Drain(_NodeAction):
    name = "kubernetes.drain"
    schema = params_schema({"node": NODE, "reason": REASON})
    destructive = True
    undo: str | None = "kubernetes.uncordon"

    def __init__(
        self,
        api: client.ApiClient,
        taint_key: str = "vigil.io/gpu-unhealthy",
        deadline: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(api, taint_key)
        self.cordon, self.taint = Cordon(api, taint_key), Taint(api, taint_key)
        self.deadline, self._sleep, self._now = deadline, sleep, now

    def _evictable(self, node: str) -> list[Any]:
        """The node's pods a drain must move: not DaemonSet or mirror pods, not finished ones. Pods
        already terminating are included (a drain is done when they are gone)."""
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        done = ("Succeeded", "Failed")
        return [p for p in pods if not _daemon_or_mirror(p) and (p.status.phase if p.status else None) not in done]

    def check(self, params: Params, idempotency_key: str) -> bool:
        return self.cordon.check(params, idempotency_key) and not self._evictable(params["node"])

    def execute(self, params: Params, idempotency_key: str) -> ActionResult:
        for step in (self.cordon, self.taint):
            result = step.execute(params, idempotency_key)
            if not result.ok:
                return result
        started = self._now()
        try:
            refused = self._evict_all(params["node"], started)
            left = [] if refused else self._wait_gone(params["node"], started)
        except ApiException as exc:
            return _failure("drain", exc)
        if refused:
            names = ", ".join(refused[:5])
            return ActionResult.failed(f"PodDisruptionBudget still refuses evicting {names}", retryable=True)
        if left:
            return ActionResult.failed(f"{len(left)} evicted pods still terminating: {', '.join(left[:5])}", True)
        return ActionResult.done(f"drained {params['node']}")

    def _evict_all(self, node: str, started: float) -> list[str]:
        """Evict every pod not yet terminating; a 429 (a PodDisruptionBudget says not now) is retried
        with backoff until the deadline, never forced with a delete. Returns the pods still refused."""
        delay = 1.0
        pending = [p for p in self._evictable(node) if p.metadata.deletion_timestamp is None]
        while pending:
            refused = [pod for pod in pending if not self._evict(pod)]
            if not refused or self._now() - started + delay > self.deadline:
                return [_pod_name(p) for p in refused]
            self._sleep(delay)
            delay = min(delay * 2, 30.0)
            pending = refused
        return []

    def _evict(self, pod: Any) -> bool:
        """One ``policy/v1`` Eviction; False when a PodDisruptionBudget refuses it (429)."""
        meta = pod.metadata
        target = client.V1ObjectMeta(name=meta.name, namespace=meta.namespace)
        body = client.V1Eviction(api_version="policy/v1", kind="Eviction", metadata=target)
        try:
            # Content-Type said outright: this client's generated code leaves it out of the eviction POST.
            headers = {"Content-Type": "application/json"}
            self.core.create_namespaced_pod_eviction(meta.name, meta.namespace, body, _headers=headers)
        except ApiException as exc:
            if exc.status == 429:
                return False
            if exc.status != 404:  # 404: gone already
                raise
        return True

    def _wait_gone(self, node: str, started: float) -> list[str]:
        """Like ``kubectl drain``: wait until the evicted pods have terminated, or the deadline."""
        delay = 1.0
        while True:
            left = [_pod_name(p) for p in self._evictable(node)]
            if not left or self._now() - started + delay > self.deadline:
                return left
            self._sleep(delay)
            delay = min(delay * 2, 10.0)

    def verify(self, params: Params) -> ActionResult:
        left = self._evictable(params["node"])
        return ActionResult(not left, f"{len(left)} pods left" if left else "no pods left")


def _pod_name(pod: Any) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def _daemon_or_mirror(pod: Any) -> bool:
    owners = pod.metadata.owner_references or []
    mirror = "kubernetes.io/config.mirror" in (pod.metadata.annotations or {})
    return mirror or any(o.kind == "DaemonSet" for o in owners)


def _label_value(reason: str) -> str:
    """A taint value is a label value: 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in reason)[:63].strip("-_.")
    return cleaned or "vigil"


def kubernetes_actions(api: client.ApiClient, taint_key: str, deadline: float) -> list[Any]:
    return [Cordon(api, taint_key), Taint(api, taint_key), Uncordon(api, taint_key), Drain(api, taint_key, deadline)]


def api_client(kubeconfig: str | None, host: str | None = None) -> client.ApiClient:
    """From a kubeconfig file, in-cluster config, or a bare URL (the contract tests' local server)."""
    from kubernetes import config as kube_config

    if host is not None:
        configuration = client.Configuration()
        configuration.host = host
        return client.ApiClient(configuration)
    if kubeconfig is not None:
        made = kube_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return cast(client.ApiClient, made)
    kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()
