"""Loading the plain manifests (deploy/) and rendered chart output, for the deploy tests (unit
and integration)."""

from __future__ import annotations

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
    """(apiGroup, resource, verb) triples granted by a Role or ClusterRole."""
    granted: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected fields in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted
