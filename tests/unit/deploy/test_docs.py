"""docs/deploy.md cannot drift from the chart and the manifests: every Helm value, every
ConfigMap key and every capability is named there."""

from __future__ import annotations

import yaml

from tests.unit.deploy.manifests import CHART, REPO, Obj, container, one

DOCS = REPO / "docs" / "deploy.md"


def _leaf_paths(values: Obj, prefix: str = "") -> list[str]:
    paths: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, f"{prefix}{key}."))
        else:
            paths.append(f"{prefix}{key}")
    return paths


def test_docs_list_every_helm_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = DOCS.read_text()
    missing = [p for p in _leaf_paths(values) if f"`{p}`" not in docs]
    assert not missing, f"docs/deploy.md does not document the values {missing}"


def test_docs_name_every_configmap_key() -> None:
    docs = DOCS.read_text()
    missing = [k for k in one("ConfigMap")["data"] if f"`{k}`" not in docs]
    assert not missing, f"docs/deploy.md does not name the ConfigMap keys {missing}"


def test_docs_explain_every_capability() -> None:
    docs = DOCS.read_text()
    for cap in container(one("DaemonSet"))["securityContext"]["capabilities"]["add"]:
        assert f"`{cap}`" in docs, cap
