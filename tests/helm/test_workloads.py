"""What each rendered workload must hold for Vigil to run on a GPU cluster: the agent on GPU nodes with
NVML, the kernel log, its spill and the node's name; analytics and alerting with their state; probes on
the ports the config opens; non-root and read-only wherever the work allows."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helm.chart import Rendered, render


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in container["volumeMounts"]}


def volumes(rendered: Rendered, kind: str, component: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in rendered.one(kind, component)["spec"]["template"]["spec"]["volumes"]}


def pod(rendered: Rendered, kind: str, component: str) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one(kind, component)["spec"]["template"]["spec"]
    return spec


def test_the_agent_runs_on_gpu_nodes_with_nvml_the_way_dcgm_exporter_gets_it() -> None:
    rendered = render()
    spec = pod(rendered, "DaemonSet", "agent")
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["runtimeClassName"] == "nvidia"
    agent = rendered.container("DaemonSet", "agent")
    assert env(agent)["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env(agent)["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    # A monitor must not take GPUs from the jobs: no device-plugin resource.
    assert not any("nvidia.com" in key for part in agent["resources"].values() for key in part)
    assert set(agent["resources"]) == {"requests", "limits"}
    assert "runtimeClassName" not in pod(render("postgres"), "DaemonSet", "agent")  # "" drops it


def test_the_agent_reports_the_nodes_name_from_the_downward_api() -> None:
    agent = render().container("DaemonSet", "agent")
    assert env(agent)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "--host=$(NODE_NAME)" in agent["args"]


def test_the_agent_reads_kmsg_privileged_or_a_log_file_with_one_capability() -> None:
    rendered = render()
    agent = rendered.container("DaemonSet", "agent")
    assert mounts(agent)["kmsg"] == {"name": "kmsg", "mountPath": "/dev/kmsg", "readOnly": True}
    assert volumes(rendered, "DaemonSet", "agent")["kmsg"]["hostPath"] == {"path": "/dev/kmsg", "type": "CharDevice"}
    assert agent["securityContext"]["privileged"] is True  # the device cgroup refuses host devices otherwise
    assert "varlog" not in mounts(agent)

    rendered = render("postgres")  # kernel_log: {source: file, path: /var/log/kern.log}
    agent = rendered.container("DaemonSet", "agent")
    assert mounts(agent)["varlog"] == {"name": "varlog", "mountPath": "/var/log", "readOnly": True}
    assert volumes(rendered, "DaemonSet", "agent")["varlog"]["hostPath"] == {"path": "/var/log", "type": "Directory"}
    security = agent["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert "kmsg" not in mounts(agent)

    agent = render("default", "config.agent.collectors.kernel_log=null").container("DaemonSet", "agent")
    assert agent["securityContext"]["capabilities"] == {"drop": ["ALL"]} and "kmsg" not in mounts(agent)
    agent = render("default", "config.agent.collectors.kernel_log.enabled=false").container("DaemonSet", "agent")
    assert agent["securityContext"]["privileged"] is False


def test_the_agent_spills_to_the_node_or_an_empty_dir_under_its_data_dir() -> None:
    rendered = render()
    assert rendered.config()["data_dir"] == "/var/lib/vigil"
    assert mounts(rendered.container("DaemonSet", "agent"))["data"]["mountPath"] == "/var/lib/vigil"
    data = volumes(rendered, "DaemonSet", "agent")["data"]
    assert data["hostPath"] == {"path": "/var/lib/vigil", "type": "DirectoryOrCreate"}
    data = volumes(render("postgres"), "DaemonSet", "agent")["data"]
    assert data == {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}


@pytest.mark.parametrize(
    ("kind", "component", "port_name", "config_port"),
    [
        ("DaemonSet", "agent", "metrics", ("agent", "metrics_port")),
        ("Deployment", "analytics", "metrics", None),
        ("StatefulSet", "alerting", "http", ("alerting", "api", "port")),
    ],
)
def test_probes_and_services_use_the_port_the_service_opens(
    kind: str, component: str, port_name: str, config_port: tuple[str, ...] | None
) -> None:
    rendered = render("monitoring", "agent.port=9100", "analytics.port=9101", "alerting.port=9102")
    container = rendered.container(kind, component)
    (port,) = container["ports"]
    assert port["name"] == port_name
    if config_port is None:  # analytics: the command line opens it
        assert f"--metrics-port={port['containerPort']}" in container["args"]
        assert "--metrics-address=0.0.0.0" in container["args"]
    else:
        section = rendered.config()
        for key in config_port:
            section = section[key]
        assert section == port["containerPort"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port_name}
    (service_port,) = rendered.one("Service", component)["spec"]["ports"]
    assert service_port["targetPort"] == port_name and service_port["port"] == port["containerPort"]
    assert rendered.config()["agent"]["metrics_address"] == "0.0.0.0"
    assert rendered.config()["alerting"]["api"]["host"] == "0.0.0.0"


def test_analytics_keeps_its_snapshots_on_a_volume_shared_by_its_replicas() -> None:
    rendered = render()
    assert volumes(rendered, "Deployment", "analytics")["state"]["emptyDir"] == {"sizeLimit": "5Gi"}
    assert mounts(rendered.container("Deployment", "analytics"))["state"]["mountPath"] == "/var/lib/vigil"
    rendered = render("postgres")
    deployment = rendered.one("Deployment", "analytics")
    assert deployment["spec"]["replicas"] == 4
    claim = rendered.one("PersistentVolumeClaim", "analytics")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"] == "nfs"
    state = volumes(rendered, "Deployment", "analytics")["state"]
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    # one pod on a ReadWriteOnce claim: the old pod must let go of it before the new one starts
    single = render("default", "analytics.state.persistence.enabled=true").one("Deployment", "analytics")
    assert single["spec"]["strategy"]["type"] == "Recreate"
    persistence = "analytics.state.persistence"
    existing = render("default", f"{persistence}.enabled=true", f"{persistence}.existingClaim=mine")
    assert not existing.all("PersistentVolumeClaim")
    assert volumes(existing, "Deployment", "analytics")["state"]["persistentVolumeClaim"]["claimName"] == "mine"


def test_alerting_keeps_sqlite_on_a_claim_or_its_store_in_postgres() -> None:
    sqlite = render().one("StatefulSet", "alerting")
    assert sqlite["spec"]["replicas"] == 1
    (template,) = sqlite["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "data" and template["spec"]["resources"]["requests"]["storage"] == "2Gi"
    postgres = render("postgres").one("StatefulSet", "alerting")
    assert postgres["spec"]["replicas"] == 2 and "volumeClaimTemplates" not in postgres["spec"]
    data = {v["name"]: v for v in postgres["spec"]["template"]["spec"]["volumes"]}["data"]
    assert "emptyDir" in data


def test_alerting_reads_the_secret_fragment_after_the_config() -> None:
    rendered = render("postgres")
    alerting = rendered.container("StatefulSet", "alerting")
    assert alerting["args"] == [
        "alerting",
        "--config=/etc/vigil/config.yaml",
        "--config=/etc/vigil/secrets/secrets.yaml",
    ]
    secret = rendered.one("Secret", "secrets")
    assert volumes(rendered, "StatefulSet", "alerting")["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert "hmac-key" in secret["stringData"]["secrets.yaml"] and "hmac-key" not in rendered.config_text()
    # The agent, on every GPU node, gets no secrets.
    assert "secrets" not in volumes(rendered, "DaemonSet", "agent")

    mine = render("monitoring")  # existingSecret: vigil-notifiers, key notifiers.yaml
    assert not mine.all("Secret")
    assert volumes(mine, "StatefulSet", "alerting")["secrets"]["secret"]["secretName"] == "vigil-notifiers"
    assert "--config=/etc/vigil/secrets/notifiers.yaml" in mine.container("StatefulSet", "alerting")["args"]


def test_pods_roll_when_the_config_or_the_secrets_change() -> None:
    def annotations(*sets: str) -> dict[str, str]:
        template = render("default", *sets).one("StatefulSet", "alerting")["spec"]["template"]
        return dict(template["metadata"]["annotations"])

    base = annotations()
    assert annotations("config.cluster=dc9")["checksum/config"] != base["checksum/config"]
    changed = annotations("secrets.config.alerting.notifiers[0].type=log")
    assert changed["checksum/secrets"] != base["checksum/secrets"]
    assert changed["checksum/config"] == base["checksum/config"]


@pytest.mark.parametrize("values", ["default", "postgres", "monitoring"])
def test_analytics_and_alerting_run_as_non_root_on_a_read_only_root(values: str) -> None:
    rendered = render(values)
    for kind, component in (("Deployment", "analytics"), ("StatefulSet", "alerting")):
        spec = pod(rendered, kind, component)
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        container = spec["containers"][0]["securityContext"]
        assert container == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert mounts(spec["containers"][0])["tmp"]["mountPath"] == "/tmp"  # the one writable place besides data
    agent = rendered.container("DaemonSet", "agent")
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    for workload in ("DaemonSet", "Deployment", "StatefulSet"):
        assert rendered.one(workload)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", ["default", "postgres", "monitoring"])
def test_every_object_carries_the_standard_labels(values: str) -> None:
    for doc in render(values).docs:
        labels = doc["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version"):
            assert labels.get(key), f"{doc['kind']}/{doc['metadata']['name']} lacks {key}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm" and labels["app.kubernetes.io/part-of"] == "vigil"


def test_network_policies_open_only_each_components_port() -> None:
    rendered = render("monitoring")
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"] for p in rendered.all("NetworkPolicy")
    }
    assert set(policies) == {"agent", "analytics", "alerting"}
    (rule,) = policies["alerting"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}] and len(rule["from"]) == 2
    assert policies["agent"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert all(p["policyTypes"] == ["Ingress"] for p in policies.values())
