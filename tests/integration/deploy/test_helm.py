"""The Helm chart (deploy/helm/l2announcer), rendered by the helm binary built with the control
plane: with default values it renders exactly the objects of deploy/; the reference's value names
reach the ConfigMap (and through it the agent's configuration) as the seed's examples say; and
what it renders, with default values or with every option on, passes the real server's
validation (`kubectl apply --dry-run=server`)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.config import resolve
from lab.controlplane import ControlPlane
from tests.integration.deploy.chart import (
    APPARMOR_ANNOTATION,
    HOOK_OBJECTS,
    KNOBS,
    KUBE_VERSION,
    SERVICE_MONITOR,
    SERVICE_MONITOR_API,
    RenderError,
    helm,
    render,
    template,
)
from tests.kube import Kube
from tests.unit.deploy.manifests import (
    CHART,
    Obj,
    by_kind_name,
    container,
    env_of,
    one,
    plain_objects,
)


def configmap(home: Path, values: Obj | None = None, sets: tuple[str, ...] = ()) -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap", render(home, values, sets))["data"]
    return data


def test_default_render_is_exactly_the_plain_manifests(tmp_path: Path) -> None:
    rendered = by_kind_name(render(tmp_path))
    plain = by_kind_name(plain_objects())
    assert sorted(rendered) == sorted(plain)
    for key, obj in plain.items():
        assert rendered[key] == obj, f"{key} differs between the chart and deploy/"


def test_another_namespace_moves_every_namespaced_object_and_binding(tmp_path: Path) -> None:
    objects = render(tmp_path, namespace="net-l2")
    for obj in objects:
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "net-l2"
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        assert one(binding, objects)["subjects"][0]["namespace"] == "net-l2"


def test_seed_lease_values_change_the_configmap(tmp_path: Path) -> None:
    # The seed's example (Leases section): helm --set ... and the ConfigMap it documents.
    sets = (
        "l2announcements.enabled=true,kubeProxyReplacement=true,"
        "k8sClientRateLimit.qps=40,k8sClientRateLimit.burst=60,"
        "l2announcements.leaseDuration=3s,l2announcements.leaseRenewDeadline=1s,"
        "l2announcements.leaseRetryPeriod=200ms",
    )
    data = configmap(tmp_path, sets=sets)
    default = configmap(tmp_path)
    assert {k: v for k, v in data.items() if v != default[k]} == {
        "kube-proxy-replacement": "true",
        "l2-announcements-lease-duration": "3s",
        "l2-announcements-renew-deadline": "1s",
        "l2-announcements-retry-period": "200ms",
        "k8s-client-qps": "40",
        "k8s-client-burst": "60",
    }

    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for key, value in data.items():
        (config_dir / key).write_text(value)
    resolved = resolve({"config-dir": str(config_dir)}, env={})
    assert resolved.warnings == ()
    c = resolved.config
    assert (
        c.l2_announcements_lease_duration,
        c.l2_announcements_renew_deadline,
        c.l2_announcements_retry_period,
    ) == (3.0, 1.0, 0.2)
    assert (c.k8s_client_qps, c.k8s_client_burst) == (40.0, 60)
    assert c.kube_proxy_replacement and c.enable_external_ips


@pytest.mark.parametrize(
    ("values", "key", "expected"),
    [
        ({"l2announcements": {"enabled": False}}, "enable-l2-announcements", "false"),
        ({"externalIPs": {"enabled": True}}, "enable-external-ips", "true"),
        ({"devices": ["eth0", "eth+"]}, "devices", "eth0 eth+"),
        ({"devices": "eth0 bond0"}, "devices", "eth0 bond0"),
        ({"forceDeviceDetection": True}, "force-device-detection", "true"),
        ({"k8sClientRateLimit": {"qps": 32.5}}, "k8s-client-qps", "32.5"),
        ({"l2announcements": {"garpCount": 5}}, "l2-announcements-garp-count", "5"),
        ({"l2announcements": {"garpInterval": "1s"}}, "l2-announcements-garp-interval", "1s"),
    ],
)
def test_values_reach_their_configmap_key(
    tmp_path: Path, values: Obj, key: str, expected: str
) -> None:
    assert configmap(tmp_path, values)[key] == expected


def test_l2_pod_announcements(tmp_path: Path) -> None:
    sets = ("l2podAnnouncements.enabled=true,l2podAnnouncements.interface=eth0",)
    data = configmap(tmp_path, sets=sets)
    assert data["enable-l2-pod-announcements"] == "true"
    assert data["l2-pod-announcements-interface"] == "eth0"


def test_prometheus_values_serve_metrics_on_the_port_and_declare_it(tmp_path: Path) -> None:
    objects = render(tmp_path, sets=("prometheus.enabled=true,prometheus.port=9090",))
    assert one("ConfigMap", objects)["data"]["prometheus-serve-addr"] == ":9090"
    pod = one("DaemonSet", objects)["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
    }
    assert container(one("DaemonSet", objects))["ports"] == [
        {"name": "prometheus", "containerPort": 9090, "hostPort": 9090, "protocol": "TCP"}
    ]
    # Off by default: no address, no port, no annotations.
    default = render(tmp_path)
    assert one("ConfigMap", default)["data"]["prometheus-serve-addr"] == ""
    assert "annotations" not in one("DaemonSet", default)["spec"]["template"]["metadata"]
    assert "ports" not in container(one("DaemonSet", default))


def test_a_prometheus_port_out_of_range_fails_the_render(tmp_path: Path) -> None:
    # The schema's message (test_helm_knobs.py has the template's own check without it).
    with pytest.raises(RenderError) as err:
        render(tmp_path, sets=("prometheus.enabled=true,prometheus.port=70000",))
    assert str(err.value) == (
        "Error: values don't meet the specifications of the schema(s) in the following chart(s):\n"
        "l2announcer:\n"
        "- at '/prometheus/port': maximum: got 70,000, want 65,535"
    )


def test_api_server_address_becomes_the_in_cluster_env(tmp_path: Path) -> None:
    env = env_of(
        one("DaemonSet", render(tmp_path, sets=("k8sServiceHost=192.0.2.1,k8sServicePort=6443",)))
    )
    assert env["KUBERNETES_SERVICE_HOST"] == {
        "name": "KUBERNETES_SERVICE_HOST",
        "value": "192.0.2.1",
    }
    assert env["KUBERNETES_SERVICE_PORT"] == {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}
    assert "KUBERNETES_SERVICE_HOST" not in env_of(one("DaemonSet", render(tmp_path)))


def test_image_values(tmp_path: Path) -> None:
    sets = ("image.repository=registry.example/l2announcer,image.tag=0.1.0",)
    c = container(one("DaemonSet", render(tmp_path, sets=sets)))
    assert c["image"] == "registry.example/l2announcer:0.1.0"


def test_helm_lint_finds_no_warning_or_error(tmp_path: Path) -> None:
    # --strict turns warnings into failures; an [INFO] (no icon) is all that may be said.
    linted = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), home=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    findings = [line for line in linted.stdout.splitlines() if line.startswith("[")]
    assert all(line.startswith("[INFO]") for line in findings), linted.stdout


# -- what the real server says about the rendered chart ---------------------------------------


def _dry_run(cp: ControlPlane, manifests: str, warnings: str = "") -> list[str]:
    """`kubectl apply --dry-run=server --validate=strict` of ``manifests``; its output lines."""
    done = cp.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifests, check=False
    )
    assert done.returncode == 0, done.stderr
    # No warnings (deprecated fields, unknown ones) but those expected.
    assert done.stderr == warnings, done.stderr
    return done.stdout.splitlines()


SERVICE_MONITOR_CRD = Path(__file__).parent / "servicemonitor-crd.yaml"


@pytest.fixture
def service_monitor_crd(kube: Kube) -> Iterator[Kube]:
    """The stand-in ServiceMonitor CRD (servicemonitor-crd.yaml), served while the test runs."""
    crd = yaml.safe_load(SERVICE_MONITOR_CRD.read_text())
    name = crd["metadata"]["name"]
    kube.on_cleanup(lambda: kube.kubectl("delete", "crd", name, "--wait=true", "--timeout=60s"))
    applied = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    assert applied.returncode == 0, applied.stderr
    established = kube.kubectl(
        "wait", "--for=condition=established", "--timeout=60s", f"crd/{name}"
    )
    assert established.returncode == 0, established.stderr
    yield kube


def test_default_render_with_its_crd_passes_the_servers_dry_run(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    lines = _dry_run(control_plane, template(tmp_path, include_crds=True))
    # The CRD (installed for the session already: "unchanged"), the objects of deploy/ and the
    # uninstall hook's.
    assert len(lines) == 1 + len(plain_objects()) + len(HOOK_OBJECTS), lines
    assert all(line.endswith("(server dry run)") for line in lines), lines
    assert lines[0].startswith(
        "customresourcedefinition.apiextensions.k8s.io/ciliuml2announcementpolicies.cilium.io "
    )


def test_every_option_rendered_into_another_namespace_passes_the_servers_dry_run(
    service_monitor_crd: Kube, tmp_path: Path
) -> None:
    kube = service_monitor_crd
    values = {
        "l2announcements": {
            "leaseDuration": "3s",
            "leaseRenewDeadline": "1s",
            "leaseRetryPeriod": "200ms",
            "garpCount": 5,
            "garpInterval": "1s",
        },
        "k8sClientRateLimit": {"qps": 32.5, "burst": 60},
        "kubeProxyReplacement": True,
        "externalIPs": {"enabled": True},
        "devices": ["eth0", "eth+"],
        "forceDeviceDetection": True,
        "l2podAnnouncements": {"enabled": True, "interface": "eth0"},
        "k8sServiceHost": "192.0.2.1",
        "k8sServicePort": 6443,
        "prometheus": {
            "enabled": True,
            "port": 9090,
            "serviceMonitor": SERVICE_MONITOR,
        },
        "image": {
            "repository": "registry.example/l2announcer",
            "tag": "0.1.0",
            "pullPolicy": "Always",
        },
        **KNOBS,
    }
    manifests = template(
        tmp_path, values, namespace=kube.namespace, api_versions=[SERVICE_MONITOR_API]
    )
    lines = _dry_run(kube.cp, manifests)
    assert sorted(line.split()[0] for line in lines) == sorted([
        "clusterrole.rbac.authorization.k8s.io/l2announcer",
        "clusterrolebinding.rbac.authorization.k8s.io/l2announcer",
        "configmap/l2announcer-config",
        "daemonset.apps/l2announcer",
        "role.rbac.authorization.k8s.io/l2announcer",
        "rolebinding.rbac.authorization.k8s.io/l2announcer",
        "service/l2announcer-metrics",
        "serviceaccount/l2announcer",
        "servicemonitor.monitoring.coreos.com/l2announcer",
        *HOOK_OBJECTS,
    ])  # fmt: skip
    assert all(line.endswith("(server dry run)") for line in lines), lines
    # Nothing was stored.
    stored = kube.core.list_namespaced_config_map(kube.namespace).items
    assert "l2announcer-config" not in {cm.metadata.name for cm in stored if cm.metadata}


def test_the_stand_in_service_monitor_crd_refuses_a_misspelt_field(
    service_monitor_crd: Kube, tmp_path: Path
) -> None:
    # Otherwise the dry run above would prove nothing about the ServiceMonitor's fields.
    monitor = one(
        "ServiceMonitor",
        render(
            tmp_path,
            sets=("prometheus.enabled=true,prometheus.serviceMonitor.enabled=true",),
            namespace=service_monitor_crd.namespace,
            api_versions=[SERVICE_MONITOR_API],
        ),
    )
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["endpoints"][0]["intervall"] = "30s"
    done = service_monitor_crd.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump(misspelt)
    )
    assert done.returncode != 0
    assert 'unknown field "spec.endpoints[0].intervall"' in done.stderr, done.stderr


def test_the_annotation_form_for_clusters_before_1_30_is_the_one_the_server_knows(
    kube: Kube, tmp_path: Path
) -> None:
    # This server is newer than 1.30: it accepts the annotation and says which field replaced
    # it, which shows the chart names the annotation the older servers read.
    manifests = template(tmp_path, namespace=kube.namespace, kube_version="v1.29.15")
    assert APPARMOR_ANNOTATION in manifests
    warning = (
        f"Warning: spec.template.metadata.annotations[{APPARMOR_ANNOTATION}]: "
        'deprecated since v1.30; use the "appArmorProfile" field instead\n'
    )
    lines = _dry_run(kube.cp, manifests, warnings=warning)
    assert len(lines) == len(plain_objects()) + len(HOOK_OBJECTS)
