"""The Helm chart's values file (deploy/helm/l2announcer/values.yaml), read as data. Rendering
the chart needs the helm binary: those tests are in tests/integration/deploy/test_helm.py."""

from __future__ import annotations

import yaml

from tests.unit.deploy.manifests import CHART


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
