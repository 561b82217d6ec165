"""The Helm chart (deploy/helm/l2announcer), rendered by Helm's own engine: with default values it
renders exactly the objects of deploy/, and the reference's value names reach the ConfigMap (and
through it the agent's configuration) as the seed's examples say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import resolve
from tests.unit.deploy.manifests import (
    CHART,
    Obj,
    by_kind_name,
    container,
    env_of,
    one,
    plain_objects,
    render_chart,
)

helm_python = pytest.importorskip(
    "helm_python",
    reason="the Helm engine (PyPI package helm-python-sdk) is not installed in this venv",
)


def parse_set(expression: str) -> dict[str, Any]:
    """Values from `--set a.b=c,...`, parsed by Helm itself."""
    values: dict[str, Any] = helm_python.parse_set_string(expression)
    return values


def configmap(values: Obj | None = None) -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap", render_chart(values))["data"]
    return data


def test_default_render_is_exactly_the_plain_manifests() -> None:
    rendered = by_kind_name(render_chart())
    plain = by_kind_name(plain_objects())
    assert sorted(rendered) == sorted(plain)
    for key, obj in plain.items():
        assert rendered[key] == obj, f"{key} differs between the chart and deploy/"


def test_another_namespace_moves_every_namespaced_object_and_binding() -> None:
    objects = render_chart(namespace="net-l2")
    for obj in objects:
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "net-l2"
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        assert one(binding, objects)["subjects"][0]["namespace"] == "net-l2"


def test_chart_values_name_the_reference_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["l2announcements"]) >= {
        "enabled",
        "leaseDuration",
        "leaseRenewDeadline",
        "leaseRetryPeriod",
    }
    assert set(values["k8sClientRateLimit"]) == {"qps", "burst"}
    assert set(values["l2podAnnouncements"]) == {"enabled", "interface"}
    assert set(values["externalIPs"]) == {"enabled"}
    assert set(values["prometheus"]) == {"enabled", "port"}
    for name in ("devices", "kubeProxyReplacement", "k8sServiceHost", "k8sServicePort"):
        assert name in values


def test_seed_lease_values_change_the_configmap(tmp_path: Path) -> None:
    # The seed's example (Leases section): helm --set ... and the ConfigMap it documents.
    values = parse_set(
        "l2announcements.enabled=true,kubeProxyReplacement=true,"
        "k8sClientRateLimit.qps=40,k8sClientRateLimit.burst=60,"
        "l2announcements.leaseDuration=3s,l2announcements.leaseRenewDeadline=1s,"
        "l2announcements.leaseRetryPeriod=200ms"
    )
    data = configmap(values)
    default = configmap()
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
def test_values_reach_their_configmap_key(values: Obj, key: str, expected: str) -> None:
    assert configmap(values)[key] == expected


def test_l2_pod_announcements(tmp_path: Path) -> None:
    data = configmap(parse_set("l2podAnnouncements.enabled=true,l2podAnnouncements.interface=eth0"))
    assert data["enable-l2-pod-announcements"] == "true"
    assert data["l2-pod-announcements-interface"] == "eth0"


def test_prometheus_values_serve_metrics_on_the_port_and_declare_it() -> None:
    values = parse_set("prometheus.enabled=true,prometheus.port=9090")
    objects = render_chart(values)
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
    assert configmap()["prometheus-serve-addr"] == ""
    default_pod = one("DaemonSet", render_chart())["spec"]["template"]
    assert "annotations" not in default_pod["metadata"]
    assert "ports" not in container(one("DaemonSet", render_chart()))


def test_a_prometheus_port_out_of_range_fails_the_render() -> None:
    with pytest.raises(helm_python.errors.HelmRenderError) as err:
        render_chart(parse_set("prometheus.enabled=true,prometheus.port=70000"))
    assert "prometheus.port must be a port number between 1 and 65535, got 70000" in str(err.value)


def test_api_server_address_becomes_the_in_cluster_env() -> None:
    values = parse_set("k8sServiceHost=192.0.2.1,k8sServicePort=6443")
    env = env_of(one("DaemonSet", render_chart(values)))
    assert env["KUBERNETES_SERVICE_HOST"] == {
        "name": "KUBERNETES_SERVICE_HOST",
        "value": "192.0.2.1",
    }
    assert env["KUBERNETES_SERVICE_PORT"] == {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}
    assert "KUBERNETES_SERVICE_HOST" not in env_of(one("DaemonSet", render_chart()))


def test_image_values() -> None:
    values = parse_set("image.repository=registry.example/l2announcer,image.tag=0.1.0")
    c = container(one("DaemonSet", render_chart(values)))
    assert c["image"] == "registry.example/l2announcer:0.1.0"


def test_helm_lint_finds_no_warning_or_error() -> None:
    # Severities as in Helm's lint support package: 1 info, 2 warning, 3 error.
    result = helm_python.lint(str(CHART))
    assert result["errors"] == [], result
    assert [m for m in result["messages"] if m["severity"] >= 2] == [], result
