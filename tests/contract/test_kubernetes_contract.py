"""Contract test: the Kubernetes node actions (cordon, taint, drain through the Eviction API, uncordon)
with the official ``kubernetes`` client against a loopback server that plays the API and checks each
request's path, verb, headers and body (``tests/kube_api.py``). No Kubernetes API server runs here,
so this is the published contract, not a real cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vigil.alerting.runbooks.actions.kubernetes import Cordon, Drain, Taint, Uncordon, api_client

from tests.kube_api import STRATEGIC, KubeApi, KubeState, node, pod

KEY = "vigil.io/gpu-unhealthy"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@pytest.fixture
def state() -> KubeState:
    return KubeState(nodes={"node-1": node("node-1", taints=[GPU_TAINT]), "node-2": node("node-2")})


@pytest.fixture
def api(state: KubeState) -> Iterator[KubeApi]:
    with KubeApi(state).running() as server:
        yield server
    assert server.violations == []


class FakeTime:
    """``sleep`` advances ``now``: the drain's backoff and deadline without waiting."""

    def __init__(self) -> None:
        self.t, self.sleeps = 0.0, list[float]()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_cordon_patches_spec_unschedulable_with_a_strategic_merge_patch(api: KubeApi, state: KubeState) -> None:
    cordon = Cordon(api_client(None, api.url))
    params = {"node": "node-2", "reason": "incident 7"}
    assert not cordon.check(params, "r/0")
    assert cordon.execute(params, "r/0").ok
    (patch,) = api.requests("PATCH")
    assert patch.path == "/api/v1/nodes/node-2"
    assert patch.headers["Content-Type"] == STRATEGIC
    assert patch.body == {"spec": {"unschedulable": True}}
    assert state.nodes["node-2"]["spec"]["unschedulable"] is True
    assert cordon.check(params, "r/0")  # done: the executor records it without acting again
    assert cordon.verify(params).ok


def test_taint_appends_the_configured_key_without_clobbering_existing_taints(api: KubeApi, state: KubeState) -> None:
    taint = Taint(api_client(None, api.url), KEY)
    params = {"node": "node-1", "reason": "XID 79 incident 7: GPU fell off the bus"}
    assert not taint.check(params, "r/1")
    assert taint.execute(params, "r/1").ok
    (patch,) = api.requests("PATCH")
    assert patch.headers["Content-Type"] == STRATEGIC
    ours = {"key": KEY, "value": "XID-79-incident-7--GPU-fell-off-the-bus", "effect": "NoSchedule"}
    # The list has no merge key: the whole list goes, with the resourceVersion it was read at.
    assert patch.body == {"metadata": {"resourceVersion": "100"}, "spec": {"taints": [GPU_TAINT, ours]}}
    assert state.nodes["node-1"]["spec"]["taints"] == [GPU_TAINT, ours]
    assert taint.check(params, "r/1")
    assert taint.execute(params, "r/1").ok  # already tainted: read, and no second PATCH
    assert len(api.requests("PATCH")) == 1


def test_a_concurrent_change_answers_409_and_the_taint_is_retried_not_forced(api: KubeApi, state: KubeState) -> None:
    taint = Taint(api_client(None, api.url), KEY)

    real_read = taint._node

    def stale_read(name: str) -> object:
        found = real_read(name)
        state.nodes[name]["metadata"]["resourceVersion"] = "101"  # someone else wrote the node meanwhile
        return found

    taint._node = stale_read  # type: ignore[method-assign]
    result = taint.execute({"node": "node-1", "reason": "r"}, "r/1")
    assert not result.ok and result.retryable and "409" in result.detail
    assert state.nodes["node-1"]["spec"]["taints"] == [GPU_TAINT]  # not overwritten


def test_drain_evicts_through_the_eviction_api_retrying_a_pdb_429_and_skipping_daemonsets(
    api: KubeApi, state: KubeState
) -> None:
    for made in (
        pod("trainer-0", "node-1"),
        pod("trainer-1", "node-1"),  # guarded by a PodDisruptionBudget: refused twice
        pod("gone-0", "node-1"),  # deleted between the list and its eviction: 404
        pod("dcgm-exporter-x", "node-1", ns="gpu-operator", owner="DaemonSet"),
        pod("kube-proxy-node-1", "node-1", ns="kube-system", owner="", mirror=True),
        pod("job-done", "node-1", phase="Succeeded"),
        pod("elsewhere", "node-2"),
    ):
        state.pods[(made["metadata"]["namespace"], made["metadata"]["name"])] = made
    state.pdb_refusals[("train", "trainer-1")] = 2
    state.vanish.add(("train", "gone-0"))
    clock = FakeTime()
    drain = Drain(api_client(None, api.url), KEY, deadline=60.0, sleep=clock.sleep, now=clock.now)
    params = {"node": "node-1", "reason": "incident 7"}
    assert not drain.check(params, "r/2")

    result = drain.execute(params, "r/2")

    assert result.ok, result.detail
    lists = api.requests("GET", "/api/v1/pods")
    assert lists and all(s.query == {"fieldSelector": ["spec.nodeName=node-1"]} for s in lists)
    evicted = [s.path.split("/")[-2] for s in api.requests("POST")]
    assert sorted(set(evicted)) == ["gone-0", "trainer-0", "trainer-1"]
    assert evicted.count("trainer-1") == 3 and evicted.count("trainer-0") == 1  # two 429s, then allowed
    first = api.requests("POST")[0]
    assert first.path == "/api/v1/namespaces/train/pods/trainer-0/eviction"
    assert first.body == {"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "trainer-0", "namespace": "train"}}  # fmt: skip
    assert clock.sleeps[:2] == [1.0, 2.0]  # backoff between the refused rounds
    assert not api.requests("DELETE")  # never forced
    assert state.nodes["node-1"]["spec"]["unschedulable"] is True
    assert [t["key"] for t in state.nodes["node-1"]["spec"]["taints"]] == ["nvidia.com/gpu", KEY]
    remaining = sorted(name for (_, name) in state.pods)
    assert remaining == ["dcgm-exporter-x", "elsewhere", "job-done", "kube-proxy-node-1"]
    assert drain.check(params, "r/2") and drain.verify(params).ok  # drained: a resumed step does nothing


def test_a_pdb_that_keeps_refusing_fails_the_step_as_retryable_before_the_deadline(
    api: KubeApi, state: KubeState
) -> None:
    state.pods[("train", "trainer-0")] = pod("trainer-0", "node-2")
    state.pdb_refusals[("train", "trainer-0")] = 10**6
    clock = FakeTime()
    drain = Drain(api_client(None, api.url), KEY, deadline=10.0, sleep=clock.sleep, now=clock.now)
    result = drain.execute({"node": "node-2", "reason": "r"}, "r/2")
    assert not result.ok and result.retryable
    assert "PodDisruptionBudget still refuses evicting train/trainer-0" in result.detail
    assert clock.sleeps == [1.0, 2.0, 4.0] and sum(clock.sleeps) <= 10.0
    assert len(api.requests("POST")) == 4 and not api.requests("DELETE")
    assert ("train", "trainer-0") in state.pods


def test_uncordon_removes_only_our_taint_and_sets_schedulable(api: KubeApi, state: KubeState) -> None:
    ours = {"key": KEY, "value": "incident-7", "effect": "NoSchedule"}
    state.nodes["node-1"] = node("node-1", taints=[GPU_TAINT, ours], unschedulable=True)
    uncordon = Uncordon(api_client(None, api.url), KEY)
    params = {"node": "node-1"}
    assert not uncordon.check(params, "r/3")
    assert uncordon.execute(params, "r/3").ok
    taints, flag = api.requests("PATCH")
    assert taints.body == {"metadata": {"resourceVersion": "100"}, "spec": {"taints": [GPU_TAINT]}}
    assert flag.body == {"spec": {"unschedulable": False}}
    assert state.nodes["node-1"]["spec"] == {"taints": [GPU_TAINT], "unschedulable": False}
    assert uncordon.check(params, "r/3") and uncordon.verify(params).ok


def test_a_missing_node_is_a_permanent_failure_naming_the_status(api: KubeApi) -> None:
    result = Cordon(api_client(None, api.url)).execute({"node": "node-9"}, "r/0")
    assert not result.ok and not result.retryable and "404" in result.detail
