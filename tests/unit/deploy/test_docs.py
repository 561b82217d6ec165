"""docs/deploy.md cannot drift from the chart and the manifests: every Helm value, every
ConfigMap key and every capability is named there."""

from __future__ import annotations

from tests.unit.deploy.manifests import REPO, chart_schema, container, one, schema_values

DOCS = REPO / "docs" / "deploy.md"


def test_docs_list_every_helm_value() -> None:
    # The schema's values are values.yaml's (tests/unit/deploy/test_helm.py); a map of the
    # operator's keys (nodeSelector) or a Kubernetes type (resources) is one value.
    docs = DOCS.read_text()
    rows = [line for line in docs.splitlines() if line.startswith("| `")]
    missing = [p for p in schema_values(chart_schema()) if not any(f"| `{p}` |" in r for r in rows)]
    assert not missing, f"docs/deploy.md has no table row for the values {missing}"


def test_docs_name_every_configmap_key() -> None:
    docs = DOCS.read_text()
    missing = [k for k in one("ConfigMap")["data"] if f"`{k}`" not in docs]
    assert not missing, f"docs/deploy.md does not name the ConfigMap keys {missing}"


def test_docs_explain_every_capability() -> None:
    docs = DOCS.read_text()
    for cap in container(one("DaemonSet"))["securityContext"]["capabilities"]["add"]:
        assert f"`{cap}`" in docs, cap
