"""List semantics: shape, pagination from one snapshot, label and field selectors,
resourceVersion options."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def _pod(name: str, node: str, **labels: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
    }


def test_list_shape(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, policy_crd: object
) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    raw = json.loads(core.list_node(_preload_content=False).data)
    assert raw["kind"] == "NodeList" and raw["apiVersion"] == "v1"
    assert "kind" not in raw["items"][0] and "apiVersion" not in raw["items"][0]
    empty = json.loads(core.list_namespaced_service("default", _preload_content=False).data)
    assert empty["items"] == [] and empty["metadata"]["resourceVersion"].isdigit()

    body = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "p"},
    }
    custom.create_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", body
    )
    listed = custom.list_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies"
    )
    assert listed["kind"] == "CiliumL2AnnouncementPolicyList"
    assert listed["items"][0]["kind"] == "CiliumL2AnnouncementPolicy"


def test_pagination_walks_one_snapshot(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_node({"metadata": {"name": f"n{i}"}})
    first = core.list_node(limit=2)
    names = [n.metadata.name for n in first.items]
    snapshot = first.metadata.resource_version
    core.create_node({"metadata": {"name": "n9"}})
    core.delete_node("n4")
    token = first.metadata._continue
    while token:
        page = core.list_node(limit=2, _continue=token)
        assert page.metadata.resource_version == snapshot
        names += [n.metadata.name for n in page.items]
        token = page.metadata._continue
    assert names == ["n0", "n1", "n2", "n3", "n4"]


def test_paginated_list_across_namespace_prefixes(core: client.CoreV1Api) -> None:
    # "a-x" sorts before "a/" as a string but after "a" as a namespace: every page must continue
    # after the last object in (namespace, name) order, and count what is left the same way.
    for ns in ("a", "a-x", "b"):
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    first = core.list_config_map_for_all_namespaces(limit=1)
    assert first.metadata.remaining_item_count == 2
    seen = [(c.metadata.namespace, c.metadata.name) for c in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_config_map_for_all_namespaces(limit=1, _continue=token)
        seen += [(c.metadata.namespace, c.metadata.name) for c in page.items]
        token = page.metadata._continue
    assert seen == [("a", "c"), ("a-x", "c"), ("b", "c")]


def test_field_selectors(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", _pod("a", "n1"))
    core.create_namespaced_pod("default", _pod("b", "n2"))
    pods = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert [p.metadata.name for p in pods.items] == ["a"]
    pods = core.list_namespaced_pod("default", field_selector="spec.nodeName!=n1,metadata.name=b")
    assert [p.metadata.name for p in pods.items] == ["b"]
    with pytest.raises(ApiException) as caught:
        core.list_service_for_all_namespaces(field_selector="spec.foo=x")
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["message"] == "field label not supported: spec.foo"


def test_custom_resource_field_selector_message(
    custom: client.CustomObjectsApi, policy_crd: object
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.list_cluster_custom_object(
            "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", field_selector="spec.x=y"
        )
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["message"] == (
        '"spec.x" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("color=blue", ["a"]),
        ("color==blue", ["a"]),
        ("color!=blue", ["b", "c"]),
        ("color in (blue, red)", ["a", "b"]),
        ("color notin (blue)", ["b", "c"]),
        ("color", ["a", "b"]),
        ("!color", ["c"]),
        ("tier>1", ["b"]),
        ("color=blue,tier", ["a"]),
    ],
)
def test_label_selector_grammar(core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    core.create_node({"metadata": {"name": "a", "labels": {"color": "blue", "tier": "1"}}})
    core.create_node({"metadata": {"name": "b", "labels": {"color": "red", "tier": "2"}}})
    core.create_node({"metadata": {"name": "c"}})
    assert [n.metadata.name for n in core.list_node(label_selector=selector).items] == expected


@pytest.mark.parametrize("selector", ["a in ()", "a=b=c", "a>x", "(", "a=b c"])
def test_bad_label_selectors_are_400(core: client.CoreV1Api, selector: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_node(label_selector=selector)
    assert caught.value.status == 400


def test_resource_version_match_validation(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.list_node(resource_version_match="NotOlderThan")
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["details"]["kind"] == "ListOptions"
    with pytest.raises(ApiException) as caught:
        core.list_node(resource_version="0", resource_version_match="Exact")
    assert caught.value.status == 422
    node = core.create_node({"metadata": {"name": "n1"}})
    before = node.metadata.resource_version
    core.delete_node("n1")
    exact = core.list_node(resource_version=before, resource_version_match="Exact")
    assert [n.metadata.name for n in exact.items] == ["n1"]
    assert core.list_node(resource_version="0").items == []


def test_metadata_field_selectors_work_on_every_kind(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    for name in ("a", "b"):
        leases.create_namespaced_lease("default", {"metadata": {"name": name}})
    picked = leases.list_namespaced_lease("default", field_selector="metadata.name=b")
    assert [lease.metadata.name for lease in picked.items] == ["b"]
    picked = leases.list_lease_for_all_namespaces(field_selector="metadata.namespace=default")
    assert [lease.metadata.name for lease in picked.items] == ["a", "b"]
