"""The Helm chart (helm/vigil): it lints, renders valid Kubernetes objects for the default and the CI
values files, and refuses values that cannot work, with a message naming them. Real helm, real schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.helm.chart import CHART, CI_VALUES, Rendered, helm, render, render_error, values_args

# The oldest Kubernetes the chart's kubeVersion accepts that kubernetes-validate still ships (its
# schemas start at 1.25; Chart.yaml says >=1.27), a current one, and the newest the package knows.
K8S_VERSIONS = ("1.30.0", "1.33.0", kubernetes_validate.latest_version())
# Custom resources have no schema in kubernetes-validate: these are checked by hand below.
EXCEEDS = "exceeds config.kafka.topics.partitions.telemetry"
ONLY_KMSG_OR_FILE = 'kernel_log.source must be one of the following: "kmsg", "file"'  # no journalctl in the image
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PodMonitor")}


@pytest.mark.parametrize("values", CI_VALUES)
def test_helm_lint_strict_passes(values: str) -> None:
    result = helm("lint", "--strict", CHART, *values_args(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", CI_VALUES)
def test_every_rendered_object_is_valid_kubernetes(values: str, version: str) -> None:
    rendered = render(values)
    unchecked = []
    for doc in rendered.docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS, f"{where}: no schema for it in {version}"
            unchecked.append(doc)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not valid Kubernetes {version}: {exc.message} at {list(exc.path)}")
    for doc in unchecked:
        check_monitor(doc, rendered)


def check_monitor(monitor: dict[str, Any], rendered: Rendered) -> None:
    """What a schema cannot say and Prometheus Operator needs: the selector finds the chart's own Service
    (or pods) in the release's namespace, and the endpoint names a port they have."""
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["gpu-monitoring"]}
    wanted = spec["selector"]["matchLabels"]
    if monitor["kind"] == "ServiceMonitor":
        targets = [s for s in rendered.all("Service") if wanted.items() <= s["metadata"]["labels"].items()]
        ports = {p["name"] for t in targets for p in t["spec"]["ports"]}
        endpoints = spec["endpoints"]
    else:
        pods = [w["spec"]["template"] for w in rendered.docs if w["kind"] in ("DaemonSet", "Deployment", "StatefulSet")]
        targets = [p for p in pods if wanted.items() <= p["metadata"]["labels"].items()]
        ports = {p["name"] for t in targets for c in t["spec"]["containers"] for p in c["ports"]}
        endpoints = spec["podMetricsEndpoints"]
    assert len(targets) == 1, f"{monitor['metadata']['name']} selects {len(targets)} targets"
    for endpoint in endpoints:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


def test_what_each_values_file_renders() -> None:
    def kinds(rendered: Rendered) -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in rendered.docs:
            out[doc["kind"]] = out.get(doc["kind"], 0) + 1
        return out

    workloads = {"DaemonSet": 1, "Deployment": 1, "StatefulSet": 1, "Service": 3, "ConfigMap": 1, "ServiceAccount": 1}
    assert kinds(render()) == {**workloads, "Secret": 1}
    assert kinds(render("postgres")) == {**workloads, "Secret": 1, "PersistentVolumeClaim": 1}
    # monitoring: the user's own Secret (none made), monitors, policies, a ConfigMap per dashboards/*.json
    dashboards = len(list((CHART / "dashboards").glob("*.json")))
    assert kinds(render("monitoring")) == {
        **workloads,
        "ConfigMap": 1 + dashboards,
        "ServiceMonitor": 2,
        "PodMonitor": 1,
        "NetworkPolicy": 3,
    }
    # sink: its Deployment and Service, and it joins the ServiceMonitors and the NetworkPolicies
    sink = {**workloads, "Deployment": 2, "Service": 4, "Secret": 1, "ServiceMonitor": 3, "NetworkPolicy": 4}
    assert kinds(render("sink")) == sink


@pytest.mark.parametrize(
    ("values", "sets", "message"),
    [
        ("default", ["analytics.replicas=9"], f"analytics.replicas (9) {EXCEEDS} (8)"),
        ("postgres", ["analytics.replicas=17"], f"analytics.replicas (17) {EXCEEDS} (16)"),
        ("default", ["analytics.replicas=0"], "analytics.replicas: Must be greater than or equal to 1"),
        ("default", ["alerting.replicas=2"], "alerting.replicas does not match: 1"),  # sqlite: one writer
        ("default", ["alerting.store.type=mysql"], "alerting.store.type must be one of the following"),
        ("default", ["config.kafka.bootstrap_servers=null"], "config.kafka: bootstrap_servers is required"),
        ("default", ["config.kafka.bootstrap_servers[0]=no-port"], "bootstrap_servers.0: Does not match pattern"),
        ("default", ["config.kafka.topics.partitions.telemetry=0"], "partitions.telemetry: Must be greater than"),
        ("default", ["config.data_dir=/elsewhere"], "config.data_dir: Must not validate"),  # the chart's
        ("default", ["config.agent.collectors.kernel_log.source=journal"], ONLY_KMSG_OR_FILE),
        ("default", ["agent.dataDir.type=local"], "agent.dataDir.type must be one of the following"),
        ("default", ["agent.port=70000"], "agent.port: Must be less than or equal to 65535"),
        ("default", ["analytic.replicas=2"], "Additional property analytic is not allowed"),  # a typo
        ("default", ["sink.influx.enabled=true"], "sink.influx.enabled: set config.sink.influx.url"),
        ("sink", ["sink.influx.replicas=9"], "sink.influx.replicas (9) exceeds config.kafka.topics.partitions"),
        ("sink", ["sink.influx.port=0"], "sink.influx.port: Must be greater than or equal to 1"),
        ("sink", ["sink.influx.enable=true"], "Additional property enable is not allowed"),
        ("default", ["alerting.store.type=postgres"], "give alerting.store.url in secrets.config"),
        (
            "default",
            ["config.agent.collectors.kernel_log.source=file", "config.agent.collectors.kernel_log.path=/tmp/k.log"],
            "the path must be under it",
        ),
        (
            "default",
            ["analytics.replicas=2", "analytics.state.persistence.enabled=true"],
            "set analytics.state.persistence.accessModes to [ReadWriteMany]",
        ),
    ],
)
def test_values_that_cannot_work_are_refused_naming_them(values: str, sets: list[str], message: str) -> None:
    assert message in render_error(values, *sets)


def test_replicas_up_to_the_telemetry_partitions_are_accepted() -> None:
    assert render("postgres", "analytics.replicas=16").one("Deployment", "analytics")["spec"]["replicas"] == 16


def test_the_partition_fallback_is_vigils_own_default() -> None:
    from vigil.config import TopicsConfig

    default = TopicsConfig().partitions["telemetry"]
    unset = "config.kafka.topics.partitions.telemetry=null"  # the key removed: Vigil's default applies
    assert render("default", unset, f"analytics.replicas={default}")
    assert f"{EXCEEDS} ({default})" in render_error("default", unset, f"analytics.replicas={default + 1}")


def test_chart_app_version_is_the_package_version() -> None:
    import tomllib

    import yaml

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((CHART.parents[1] / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    assert render().container("Deployment", "analytics")["image"] == f"vigil:{project['version']}"
