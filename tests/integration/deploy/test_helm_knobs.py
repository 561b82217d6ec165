"""The chart's knobs, rendered by the helm binary built with the control plane: the schema
(values.schema.json) refuses unknown and mistyped values with its own message; every scheduling,
pod and container knob lands where it belongs; the AppArmor setting follows the cluster's
version; the ServiceMonitor is rendered only when asked for, and only where it can be applied.
What the real server says about these renders is in test_helm.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.deploy.chart import (
    APPARMOR_ANNOTATION,
    KNOBS,
    RELEASE,
    SERVICE_MONITOR,
    SERVICE_MONITOR_API,
    RenderError,
    helm,
    render,
)
from tests.unit.deploy.manifests import CHART, Obj, by_kind_name, container, env_of, one

SCHEMA_ERROR = (
    "Error: values don't meet the specifications of the schema(s) in the following chart(s):\n"
    "l2announcer:\n"
)
METRICS_ON = "prometheus.enabled=true,prometheus.serviceMonitor.enabled=true"
OUR_LABELS = {"app.kubernetes.io/name": "l2announcer", "app.kubernetes.io/part-of": "l2announcer"}


def refusal(home: Path, *sets: str) -> str:
    with pytest.raises(RenderError) as err:
        render(home, sets=sets)
    return str(err.value)


def pod_spec(objects: list[Obj]) -> Obj:
    spec: Obj = one("DaemonSet", objects)["spec"]["template"]["spec"]
    return spec


def pod_metadata(objects: list[Obj]) -> Obj:
    metadata: Obj = one("DaemonSet", objects)["spec"]["template"]["metadata"]
    return metadata


# -- the schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        # The two commands of the issue: a mistyped key, and a port that is not a number.
        ("nodeSelectr.a=b", "- at '': additional properties 'nodeSelectr' not allowed"),
        ("prometheus.port=abc", "- at '/prometheus/port': got string, want integer"),
    ],
)
def test_a_mistyped_key_or_value_fails_with_the_schemas_message(
    tmp_path: Path, setting: str, message: str
) -> None:
    assert refusal(tmp_path, setting) == SCHEMA_ERROR + message


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nodeSelector.a=true", "- at '/nodeSelector/a': got boolean, want string"),
        ("prometheus.port=70000", "- at '/prometheus/port': maximum: got 70,000, want 65,535"),
        (
            "l2announcements.garpCount=0",
            "- at '/l2announcements/garpCount': minimum: got 0, want 1",
        ),
        (
            "l2announcements.leaseDuration=15 seconds",
            "- at '/l2announcements/leaseDuration': '15 seconds' does not match pattern",
        ),
        ("k8sClientRateLimit.qps=fast", "- at '/k8sClientRateLimit/qps': 'fast' does not match"),
        ("k8sServicePort=https", "- at '/k8sServicePort': 'https' does not match pattern"),
        (
            "image.pullPolicy=Sometimes",
            "- at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
        ),
        (
            "tolerations[0].operator=Exist",
            "- at '/tolerations/0/operator': value must be one of 'Exists', 'Equal'",
        ),
        ("resources.request.cpu=1", "- at '/resources': additional properties 'request'"),
        ("affinity.nodeAfinity.x=y", "- at '/affinity': additional properties 'nodeAfinity'"),
        (
            "updateStrategy.type=Recreate",
            "- at '/updateStrategy/type': value must be one of 'RollingUpdate', 'OnDelete'",
        ),
        ("imagePullSecrets[0]=regcred", "- at '/imagePullSecrets/0': got string, want object"),
        ("bpfRoot=/tmp/maps", "- at '/bpfRoot': '/tmp/maps' does not match pattern"),
        ("extraEnv[0].value=x", "- at '/extraEnv/0': missing property 'name'"),
        (
            "prometheus.serviceMonitor.intervall=10s",
            "- at '/prometheus/serviceMonitor': additional properties 'intervall' not allowed",
        ),
        (
            "prometheus.serviceMonitor.relabelings[0].action=rename",
            "- at '/prometheus/serviceMonitor/relabelings/0/action': value must be one of",
        ),
    ],
)
def test_the_schema_refuses_values_that_would_not_work(
    tmp_path: Path, setting: str, message: str
) -> None:
    error = refusal(tmp_path, setting)
    assert error.startswith(SCHEMA_ERROR + message), error


def test_the_templates_port_check_remains_without_the_schema(tmp_path: Path) -> None:
    # helm can be told to skip the schema; the template still refuses a port out of range
    # rather than render an agent that exits on every node.
    done = helm(
        "template",
        RELEASE,
        str(CHART),
        "--skip-schema-validation",
        "--set",
        "prometheus.enabled=true,prometheus.port=70000",
        home=tmp_path,
    )
    assert done.returncode != 0
    assert "prometheus.port must be a port number between 1 and 65535, got 70000" in done.stderr


# -- scheduling, pod and container knobs --------------------------------------------------------


def test_every_knob_renders_where_it_belongs(tmp_path: Path) -> None:
    objects = render(tmp_path, KNOBS)
    ds = one("DaemonSet", objects)
    spec = pod_spec(objects)
    # nodeSelector is a map: the values file adds to the default, as helm merges maps.
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", **KNOBS["nodeSelector"]}
    for name in ("tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert spec[name] == KNOBS[name], name
    assert ds["spec"]["updateStrategy"] == KNOBS["updateStrategy"]
    metadata = pod_metadata(objects)
    assert metadata["labels"] == {**OUR_LABELS, **KNOBS["podLabels"]}
    assert metadata["annotations"] == KNOBS["podAnnotations"]
    c = container(ds)
    assert c["args"] == KNOBS["extraArgs"]
    assert c["resources"] == KNOBS["resources"]
    env = env_of(ds)
    assert list(env)[-1] == "HTTPS_PROXY"
    assert env["HTTPS_PROXY"] == KNOBS["extraEnv"][0]
    # Nothing else moved: the other objects are the default render's.
    default = by_kind_name(render(tmp_path))
    for key, obj in by_kind_name(objects).items():
        if key[0] != "DaemonSet":
            assert obj == default[key], key


def test_the_bpf_root_is_the_agents_and_defaults_to_the_references(tmp_path: Path) -> None:
    # Beside Cilium, whose maps live in tc/globals too, operators give the agent its own root.
    assert env_of(one("DaemonSet", render(tmp_path)))["L2ANNOUNCER_BPF_ROOT"] == {
        "name": "L2ANNOUNCER_BPF_ROOT",
        "value": "/sys/fs/bpf/tc/globals",
    }
    moved = render(tmp_path, {"bpfRoot": "/sys/fs/bpf/l2announcer"})
    assert env_of(one("DaemonSet", moved))["L2ANNOUNCER_BPF_ROOT"]["value"] == (
        "/sys/fs/bpf/l2announcer"
    )


def test_defaults_can_be_removed(tmp_path: Path) -> None:
    values: Obj = {
        "nodeSelector": None,
        "tolerations": [],
        "priorityClassName": "",
        "resources": None,
        "updateStrategy": None,
    }
    objects = render(tmp_path, values)
    spec = pod_spec(objects)
    for name in ("nodeSelector", "tolerations", "priorityClassName"):
        assert name not in spec, name
    assert "resources" not in container(one("DaemonSet", objects))
    assert "updateStrategy" not in one("DaemonSet", objects)["spec"]


def test_pod_annotations_win_over_the_charts_own(tmp_path: Path) -> None:
    # With a ServiceMonitor, annotation-based scrape configs would scrape every agent twice.
    values = {"prometheus": {"enabled": True}, "podAnnotations": {"prometheus.io/scrape": "false"}}
    assert pod_metadata(render(tmp_path, values))["annotations"] == {
        "prometheus.io/scrape": "false",
        "prometheus.io/port": "9734",
    }


@pytest.mark.parametrize("label", sorted(OUR_LABELS))
def test_pod_labels_may_not_replace_the_selectors(tmp_path: Path, label: str) -> None:
    with pytest.raises(RenderError) as err:
        render(tmp_path, {"podLabels": {label: "other"}})
    assert (
        f"podLabels may not set {label}: the DaemonSet selects its pods by the chart's own value"
    ) in str(err.value)


@pytest.mark.parametrize(
    ("sets", "name"),
    [
        (
            ("extraEnv[0].name=L2ANNOUNCER_STATE_DIR,extraEnv[0].value=/tmp",),
            "L2ANNOUNCER_STATE_DIR",
        ),
        (("extraEnv[0].name=NODE_NAME,extraEnv[0].value=n1",), "NODE_NAME"),
        (
            ("k8sServiceHost=192.0.2.1,extraEnv[0].name=KUBERNETES_SERVICE_HOST",),
            "KUBERNETES_SERVICE_HOST",
        ),
    ],
)
def test_extra_env_may_not_hide_the_charts_variables(
    tmp_path: Path, sets: tuple[str, ...], name: str
) -> None:
    assert f"extraEnv may not set {name}: the chart sets it" in refusal(tmp_path, *sets)


def test_extra_env_may_set_the_api_server_when_the_chart_does_not(tmp_path: Path) -> None:
    sets = ("extraEnv[0].name=KUBERNETES_SERVICE_HOST,extraEnv[0].value=192.0.2.1",)
    env = env_of(one("DaemonSet", render(tmp_path, sets=sets)))
    assert env["KUBERNETES_SERVICE_HOST"] == {
        "name": "KUBERNETES_SERVICE_HOST",
        "value": "192.0.2.1",
    }


# -- AppArmor follows the cluster's version ----------------------------------------------------


@pytest.mark.parametrize(
    ("kube_version", "field"),
    [
        ("v1.29.15", False),
        ("v1.30.0-rc.1", True),  # a pre-release of 1.30 has the field
        ("v1.30.2-eks-1234", True),  # as do providers' builds
        ("v1.30.0", True),
        ("v1.37.2", True),
    ],
)
def test_apparmor_is_the_field_from_1_30_and_the_annotation_before(
    tmp_path: Path, kube_version: str, field: bool
) -> None:
    objects = render(tmp_path, kube_version=kube_version)
    security = container(one("DaemonSet", objects))["securityContext"]
    annotations = pod_metadata(objects).get("annotations", {})
    if field:
        assert security["appArmorProfile"] == {"type": "Unconfined"}
        assert APPARMOR_ANNOTATION not in annotations
    else:
        assert "appArmorProfile" not in security
        assert annotations == {APPARMOR_ANNOTATION: "unconfined"}


# -- the ServiceMonitor ---------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [(), ("prometheus.enabled=true",)])
def test_no_service_monitor_unless_enabled(tmp_path: Path, sets: tuple[str, ...]) -> None:
    kinds = {o["kind"] for o in render(tmp_path, sets=sets, api_versions=[SERVICE_MONITOR_API])}
    assert "ServiceMonitor" not in kinds
    assert "Service" not in kinds


def test_service_monitor_needs_metrics(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as err:
        render(
            tmp_path,
            sets=("prometheus.serviceMonitor.enabled=true",),
            api_versions=[SERVICE_MONITOR_API],
        )
    assert (
        "prometheus.serviceMonitor.enabled needs prometheus.enabled=true: the ServiceMonitor "
        "scrapes the agent's metrics port"
    ) in str(err.value)


def test_service_monitor_needs_a_cluster_that_serves_it(tmp_path: Path) -> None:
    assert (
        "prometheus.serviceMonitor.enabled: the cluster does not serve monitoring.coreos.com/v1 "
        "ServiceMonitor; install the Prometheus Operator's CRDs first (with helm template, pass "
        "--api-versions monitoring.coreos.com/v1/ServiceMonitor)"
    ) in refusal(tmp_path, METRICS_ON)


def test_service_monitor_scrapes_every_agent_on_its_metrics_port(tmp_path: Path) -> None:
    values = {
        "prometheus": {
            "enabled": True,
            "port": 9090,
            "serviceMonitor": SERVICE_MONITOR,
        }
    }
    objects = render(tmp_path, values, namespace="net-l2", api_versions=[SERVICE_MONITOR_API])
    service = one("Service", objects)
    monitor = one("ServiceMonitor", objects)
    ds = one("DaemonSet", objects)

    # The Service selects the agents' pods and names their metrics port.
    assert service["metadata"]["namespace"] == "net-l2"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod_metadata(objects)["labels"].items()
    (port,) = service["spec"]["ports"]
    (container_port,) = container(ds)["ports"]
    assert port == {
        "name": "prometheus",
        "port": 9090,
        "targetPort": "prometheus",
        "protocol": "TCP",
    }
    assert container_port["name"] == port["targetPort"]

    # The ServiceMonitor selects that Service (and no other Service of the chart) by its labels.
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "net-l2"
    assert monitor["metadata"]["labels"] == {**OUR_LABELS, "release": "kube-prometheus-stack"}
    assert monitor["metadata"]["annotations"] == {"example.com/owner": "network"}
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "app.kubernetes.io/component" in spec["selector"]["matchLabels"]
    assert spec["namespaceSelector"] == {"matchNames": ["net-l2"]}
    assert spec["endpoints"] == [
        {
            "port": "prometheus",
            "path": "/metrics",
            "interval": "30s",
            "scrapeTimeout": "10s",
            # The default: each target names its node.
            "relabelings": [
                {
                    "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                    "targetLabel": "node",
                    "action": "replace",
                }
            ],
            "metricRelabelings": [{"action": "drop", "regex": "go_.*"}],
        }
    ]


def test_service_monitor_labels_cannot_replace_the_charts(tmp_path: Path) -> None:
    sets = (METRICS_ON, "prometheus.serviceMonitor.labels.app\\.kubernetes\\.io/name=other")
    monitor = one("ServiceMonitor", render(tmp_path, sets=sets, api_versions=[SERVICE_MONITOR_API]))
    assert monitor["metadata"]["labels"]["app.kubernetes.io/name"] == "l2announcer"
