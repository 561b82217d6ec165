"""The Helm chart's values file and its schema (deploy/helm/l2announcer), read as data: the
schema knows every value, types each one and refuses keys it does not know. Rendering the chart
needs the helm binary: those tests are in tests/integration/deploy/test_helm.py."""

from __future__ import annotations

from collections.abc import Iterator

from tests.unit.deploy.manifests import (
    Obj,
    chart_schema,
    chart_values,
    is_kubernetes_type,
    resolve_ref,
    schema_values,
)


def test_chart_values_name_the_reference_values() -> None:
    values = chart_values()
    assert set(values["l2announcements"]) >= {
        "enabled",
        "leaseDuration",
        "leaseRenewDeadline",
        "leaseRetryPeriod",
    }
    assert set(values["k8sClientRateLimit"]) == {"qps", "burst"}
    assert set(values["l2podAnnouncements"]) == {"enabled", "interface"}
    assert set(values["externalIPs"]) == {"enabled"}
    assert set(values["prometheus"]) == {"enabled", "port", "serviceMonitor"}
    for name in ("devices", "kubeProxyReplacement", "k8sServiceHost", "k8sServicePort"):
        assert name in values


def test_the_chart_has_the_knobs_operators_expect() -> None:
    values = chart_values()
    assert values["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert values["tolerations"] == [{"operator": "Exists"}]
    assert values["priorityClassName"] == "system-node-critical"
    for name in ("affinity", "podAnnotations", "podLabels"):
        assert values[name] == {}, name
    for name in ("imagePullSecrets", "extraArgs", "extraEnv"):
        assert values[name] == [], name
    assert values["updateStrategy"]["type"] == "RollingUpdate"
    assert "requests" in values["resources"]
    assert values["prometheus"]["serviceMonitor"]["enabled"] is False


def _objects(schema: Obj, node: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    """Every object schema with properties, at any depth (definitions included)."""
    node = resolve_ref(schema, node)
    if "properties" in node:
        yield path or "<root>", node
        for key, child in node["properties"].items():
            yield from _objects(schema, child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from _objects(schema, node["items"], f"{path}[]")


def test_the_schema_refuses_unknown_keys_at_every_level() -> None:
    schema = chart_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    objects = list(_objects(schema, schema))
    assert len(objects) > 10
    open_objects = [path for path, node in objects if node.get("additionalProperties") is not False]
    assert not open_objects, f"objects that accept unknown keys: {open_objects}"


def test_every_value_has_a_type() -> None:
    schema = chart_schema()
    untyped = [path for path, node in schema_values(schema).items() if "type" not in node]
    assert not untyped, f"values without a type: {untyped}"


def _has_path(values: Obj, path: str) -> bool:
    node: object = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _value_paths(values: Obj, schema: Obj, node: Obj, prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml, descending where the schema has an object of ours."""
    paths: list[str] = []
    for key, value in values.items():
        child = resolve_ref(schema, node.get("properties", {}).get(key, {}))
        if isinstance(value, dict) and "properties" in child and not is_kubernetes_type(child):
            paths.extend(_value_paths(value, schema, child, f"{prefix}{key}."))
        else:
            paths.append(f"{prefix}{key}")
    return paths


def test_values_yaml_and_the_schema_name_the_same_values() -> None:
    schema, values = chart_schema(), chart_values()
    declared = set(schema_values(schema))
    assert [p for p in declared if not _has_path(values, p)] == [], "values without a default"
    assert set(_value_paths(values, schema, schema)) == declared
