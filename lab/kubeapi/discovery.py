"""Discovery and OpenAPI documents, built from the live Registry.

kubectl needs `/version`, `/api`, `/apis` and the group-version resource lists to map kinds and
short names to URLs (legacy discovery; kubectl falls back to it when the answer is not the
aggregated format). `kubectl apply` consults OpenAPI v3 to learn that the server validates
fields itself (the `fieldValidation` query parameter on PATCH); the documents here declare
exactly that, plus the object schemas of CRDs. OpenAPI v2 is served without definitions (see
OPENAPI_V2_JSON).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lab.kubeapi.resources import Registry, ResourceType

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-l2lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def core_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def group_list(registry: Registry) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in registry.group_versions().items()],
    }


def group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(name)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    resources: list[dict[str, Any]] = []
    for rt in registry:
        if rt.group != group or version not in rt.versions:
            continue
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if rt.has_status:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in registry:
        if rt.group != group or version not in rt.versions:
            continue
        gvk = {"group": group, "version": version, "kind": rt.kind}
        definition = _definition_name(rt, version)
        item_path = (
            f"/{_gv_path(group, version)}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
            if rt.namespaced
            else f"/{_gv_path(group, version)}/{rt.plural}/{{name}}"
        )
        paths[item_path] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {
                        "name": "dryRun",
                        "in": "query",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                    {
                        "name": "fieldManager",
                        "in": "query",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                    {
                        "name": "fieldValidation",
                        "in": "query",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
        # A top-level copy is enough: only the gvk key is added, and schemas are never changed.
        body: dict[str, Any] = (
            dict(rt.schemas[version])
            if rt.custom and rt.schemas.get(version)
            else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        )
        body["x-kubernetes-group-version-kind"] = [gvk]
        schemas[definition] = body
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _definition_name(rt: ResourceType, version: str) -> str:
    if rt.custom:
        prefix = ".".join(reversed(rt.group.split(".")))
        return f"{prefix}.{version}.{rt.kind}"
    group = rt.group.split(".")[0] if rt.group else "core"
    return f"io.k8s.api.{group}.{version}.{rt.kind}"


# OpenAPI v2, served without definitions. kubectl reads it (as protobuf) only to validate a
# `kind: List` file on the client, item by item, and skips items whose kind it finds no schema
# for; the items then reach the server with fieldValidation=Strict like any object, so they are
# still checked, here. Without the document such a file fails with "the server could not find
# the requested resource".
# Asked for under the old name (with "@", which Go's mime parser refuses in a response header),
# answered under the new one, as kube-openapi does.
OPENAPI_V2_PROTOBUF_ASKED = ("spec.v2@v1.0+protobuf", "spec.v2.v1.0+protobuf")
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
OPENAPI_V2_JSON: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
    "paths": {},
    "definitions": {},
}


def openapi_v3_index(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    for rt in registry:
        for version in rt.versions:
            if (rt.group, version) in seen:
                continue
            seen.add((rt.group, version))
            doc = openapi_v3_document(registry, rt.group, version)
            digest = (
                hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
            )
            path = _gv_path(rt.group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
