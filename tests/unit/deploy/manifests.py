"""Loading the plain manifests (deploy/) and rendered chart output, for the deploy tests (unit
and integration)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
CRDS = DEPLOY / "crds"
CHART = DEPLOY / "helm" / "l2announcer"
NAMESPACE = "kube-system"

Obj = dict[str, Any]
Key = tuple[str, str]  # (kind, name)


def load_docs(paths: Iterable[Path]) -> list[Obj]:
    docs: list[Obj] = []
    for path in sorted(paths):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def plain_objects() -> list[Obj]:
    """What `kubectl apply -f deploy/` applies: the top-level files only (deploy/helm is not
    manifests); the CRD is applied from deploy/crds/ beside it."""
    return load_docs(DEPLOY.glob("*.yaml"))


def by_kind_name(objects: Iterable[Obj]) -> dict[Key, Obj]:
    found: dict[Key, Obj] = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in found, f"duplicate {key}"
        found[key] = obj
    return found


def one(kind: str, objects: Iterable[Obj] | None = None) -> Obj:
    matches = [o for o in (plain_objects() if objects is None else objects) if o["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def load_docs_from_text(texts: Iterable[str]) -> list[Obj]:
    return [d for text in texts for d in yaml.safe_load_all(text) if d is not None]


def container(daemonset: Obj) -> Obj:
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Obj = containers[0]
    return result


def env_of(daemonset: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container(daemonset)["env"]}


def rules(role: Obj) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples granted by a Role or ClusterRole; a rule limited to
    named objects grants ``<resource>=<name>``."""
    granted: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        fields = {"apiGroups", "resources", "verbs", "resourceNames"}
        assert set(rule) <= fields, f"unexpected fields in {rule}"
        names = rule.get("resourceNames")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for named in [f"{resource}={n}" for n in names] if names else [resource]:
                        granted.add((group, named, verb))
    return granted


def chart_values() -> Obj:
    """The chart's default values (values.yaml)."""
    values: Obj = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def chart_schema() -> Obj:
    """The chart's values.schema.json."""
    schema: Obj = json.loads((CHART / "values.schema.json").read_text())
    return schema


def resolve_ref(schema: Obj, node: Obj) -> Obj:
    """``node`` with a local ``$ref`` (#/definitions/<name>) followed."""
    ref = node.get("$ref")
    if ref is None:
        return node
    prefix = "#/definitions/"
    assert ref.startswith(prefix), ref
    target: Obj = schema["definitions"][ref.removeprefix(prefix)]
    return target


def is_kubernetes_type(node: Obj) -> bool:
    """An object the schema types with Kubernetes' own field names (resources, affinity...):
    one value of the chart, however many fields it has."""
    return str(node.get("$comment", "")).startswith("Kubernetes ")


def schema_values(schema: Obj) -> dict[str, Obj]:
    """Dotted path -> schema of every value of the chart: the schema's properties, descending
    through the chart's own objects (not into Kubernetes types or free-form maps)."""
    found: dict[str, Obj] = {}

    def walk(node: Obj, prefix: str) -> None:
        for key, child in node["properties"].items():
            child = resolve_ref(schema, child)
            if "properties" in child and not is_kubernetes_type(child):
                walk(child, f"{prefix}{key}.")
            else:
                found[f"{prefix}{key}"] = child

    walk(schema, "")
    return found
