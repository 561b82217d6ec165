"""RBAC decisions and the exact 403 wording of kube-apiserver, one test per message variant."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.kubeapi.auth import admin_user, plain_user, service_account_user
from lab.kubeapi.pipeline import RequestInfo, UserInfo
from lab.kubeapi.rbac import (
    InMemoryRBACObjects,
    RBACAuthorizer,
    StoreRBACObjects,
    bootstrap_policy,
    forbidden_message,
    forbidden_status,
    rule_allows,
)
from tests.unit.kubeapi.infos import lease_info

CILIUM = service_account_user("kube-system", "cilium")
SEED_RULE = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["create", "get", "update", "list", "delete"],
}


def lease(
    verb: str, name: str = "cilium-l2announce-default-service-red", ns: str = "kube-system"
) -> RequestInfo:
    return lease_info(verb, name, ns)


def core(verb: str, resource: str, name: str = "", ns: str = "", sub: str = "") -> RequestInfo:
    return RequestInfo(
        method="GET",
        path="/api/v1/...",
        verb=verb,
        api_version="v1",
        resource=resource,
        subresource=sub,
        namespace=ns,
        name=name,
    )


def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def cluster_binding(name: str, role: str, *subjects: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": list(subjects),
    }


def role_binding(
    name: str, ns: str, kind: str, role: str, *subjects: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": list(subjects),
    }


def sa(name: str, ns: str | None = "kube-system") -> dict[str, Any]:
    subject = {"kind": "ServiceAccount", "name": name}
    if ns is not None:
        subject["namespace"] = ns
    return subject


def cilium_without_leases() -> InMemoryRBACObjects:
    return InMemoryRBACObjects(
        [
            cluster_role(
                "cilium",
                {
                    "apiGroups": [""],
                    "resources": ["services", "nodes"],
                    "verbs": ["get", "list", "watch"],
                },
            ),
            cluster_binding("cilium", "cilium", sa("cilium")),
        ]
    )


# -- the exact messages --------------------------------------------------------------------------


def test_seed_message_for_lease_get_without_lease_verbs() -> None:
    decision = RBACAuthorizer(cilium_without_leases()).authorize(CILIUM, lease("get"))
    assert not decision.allowed
    assert decision.reason == (
        'leases.coordination.k8s.io "cilium-l2announce-default-service-red" is forbidden: '
        'User "system:serviceaccount:kube-system:cilium" cannot get resource "leases" '
        'in API group "coordination.k8s.io" in the namespace "kube-system"'
    )


def test_core_group_has_no_suffix_and_empty_group_is_quoted() -> None:
    msg = forbidden_message(CILIUM, core("get", "pods", name="x", ns="default"))
    assert msg == (
        'pods "x" is forbidden: User "system:serviceaccount:kube-system:cilium" cannot get '
        'resource "pods" in API group "" in the namespace "default"'
    )


def test_cluster_scoped_says_at_the_cluster_scope() -> None:
    msg = forbidden_message(CILIUM, core("get", "nodes", name="node1"))
    assert msg == (
        'nodes "node1" is forbidden: User "system:serviceaccount:kube-system:cilium" cannot get '
        'resource "nodes" in API group "" at the cluster scope'
    )


def test_list_without_name_has_no_quoted_name() -> None:
    info = RequestInfo(
        method="GET",
        path="/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
        verb="list",
        api_group="coordination.k8s.io",
        resource="leases",
        namespace="kube-system",
    )
    assert forbidden_message(CILIUM, info) == (
        "leases.coordination.k8s.io is forbidden: User "
        '"system:serviceaccount:kube-system:cilium" cannot list resource "leases" in API group '
        '"coordination.k8s.io" in the namespace "kube-system"'
    )


def test_create_without_name() -> None:
    info = lease("create", name="")
    assert forbidden_message(CILIUM, info).startswith(
        "leases.coordination.k8s.io is forbidden: User "
        '"system:serviceaccount:kube-system:cilium" cannot create resource "leases"'
    )


def test_list_across_namespaces_is_cluster_scope() -> None:
    info = core("list", "services")
    assert forbidden_message(CILIUM, info) == (
        'services is forbidden: User "system:serviceaccount:kube-system:cilium" cannot list '
        'resource "services" in API group "" at the cluster scope'
    )


def test_subresource_is_named_resource_slash_sub_but_prefix_is_plain() -> None:
    info = core("update", "services", name="red", ns="default", sub="status")
    assert forbidden_message(CILIUM, info) == (
        'services "red" is forbidden: User "system:serviceaccount:kube-system:cilium" cannot '
        'update resource "services/status" in API group "" in the namespace "default"'
    )


def test_cluster_scoped_custom_resource_status() -> None:
    info = RequestInfo(
        method="PUT",
        path="/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies/policy1/status",
        verb="update",
        api_group="cilium.io",
        resource="ciliuml2announcementpolicies",
        subresource="status",
        name="policy1",
    )
    assert forbidden_message(CILIUM, info) == (
        'ciliuml2announcementpolicies.cilium.io "policy1" is forbidden: User '
        '"system:serviceaccount:kube-system:cilium" cannot update resource '
        '"ciliuml2announcementpolicies/status" in API group "cilium.io" at the cluster scope'
    )


def test_non_resource_path() -> None:
    info = RequestInfo(method="GET", path="/metrics", is_resource_request=False, verb="get")
    assert forbidden_message(CILIUM, info) == (
        'forbidden: User "system:serviceaccount:kube-system:cilium" cannot get path "/metrics"'
    )


def test_html_characters_are_escaped_in_the_sentence() -> None:
    info = RequestInfo(method="GET", path="/x<y>&z", is_resource_request=False, verb="get")
    assert forbidden_message(plain_user("u"), info) == (
        'forbidden: User "u" cannot get path "/x&lt;y&gt;&amp;z"'
    )


def test_forbidden_status_body_details() -> None:
    info = lease("update", name="l1")
    status = forbidden_status(forbidden_message(CILIUM, info), info)
    assert list(status) == [
        "kind",
        "apiVersion",
        "metadata",
        "status",
        "message",
        "reason",
        "details",
        "code",
    ]
    assert status["details"] == {"name": "l1", "group": "coordination.k8s.io", "kind": "leases"}
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    core_status = forbidden_status("m", core("get", "pods", name="p", ns="d"))
    assert core_status["details"] == {"name": "p", "kind": "pods"}
    json.dumps(status)


def test_missing_cluster_role_is_appended_as_rbac_reason() -> None:
    objects = InMemoryRBACObjects([cluster_binding("cilium", "cilium", sa("cilium"))])
    decision = RBACAuthorizer(objects).authorize(CILIUM, lease("get"))
    assert decision.reason.endswith(
        'in the namespace "kube-system": RBAC: clusterrole.rbac.authorization.k8s.io "cilium" not found'
    )


def test_several_missing_roles_are_aggregated_in_brackets() -> None:
    objects = InMemoryRBACObjects(
        [
            cluster_binding("a", "gone-a", sa("cilium")),
            cluster_binding("b", "gone-b", sa("cilium")),
            cluster_binding("c", "gone-a", sa("cilium")),
            role_binding("r", "kube-system", "Role", "gone-role", sa("cilium")),
        ]
    )
    decision = RBACAuthorizer(objects).authorize(CILIUM, lease("get"))
    assert decision.reason.endswith(
        ': RBAC: [clusterrole.rbac.authorization.k8s.io "gone-a" not found, '
        'clusterrole.rbac.authorization.k8s.io "gone-b" not found, '
        'role.rbac.authorization.k8s.io "gone-role" not found]'
    )


# -- decisions -----------------------------------------------------------------------------------


def test_seed_rule_allows_every_lease_verb_the_agent_uses() -> None:
    objects = cilium_without_leases()
    authorizer = RBACAuthorizer(objects)
    assert not authorizer.authorize(CILIUM, lease("update")).allowed
    objects.put(cluster_role("cilium", SEED_RULE))
    for verb in ("create", "get", "update", "list", "delete"):
        assert authorizer.authorize(CILIUM, lease(verb)).allowed, verb
    assert not authorizer.authorize(CILIUM, lease("watch")).allowed
    assert not authorizer.authorize(CILIUM, lease("patch")).allowed


def test_rbac_edits_take_effect_on_the_next_request() -> None:
    objects = cilium_without_leases()
    authorizer = RBACAuthorizer(objects)
    assert not authorizer.authorize(CILIUM, lease("get")).allowed
    objects.put(cluster_role("cilium", SEED_RULE))
    assert authorizer.authorize(CILIUM, lease("get")).allowed
    objects.delete("ClusterRoleBinding", "cilium")
    assert not authorizer.authorize(CILIUM, lease("get")).allowed


class CountingObjects(InMemoryRBACObjects):
    """Counts how often each RBAC list is read."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        super().__init__(objects)
        self.reads: dict[str, int] = {}

    def list_objects(self, resource: str, namespace: str | None = None) -> Any:
        self.reads[resource] = self.reads.get(resource, 0) + 1
        return super().list_objects(resource, namespace)


def test_cluster_roles_are_listed_once_per_request_not_once_per_binding() -> None:
    objects = CountingObjects(
        [
            cluster_role("a", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
            cluster_binding("a1", "a", sa("cilium")),
            cluster_binding("a2", "a", sa("cilium")),
            cluster_binding("gone", "gone", sa("cilium")),
        ]
    )
    decision = RBACAuthorizer(objects, builtin=()).authorize(CILIUM, lease("get"))
    assert decision.reason.endswith(
        ': RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    )
    assert objects.reads == {"clusterrolebindings": 1, "rolebindings": 1, "clusterroles": 1}


def test_system_masters_is_always_allowed() -> None:
    authorizer = RBACAuthorizer(InMemoryRBACObjects(), builtin=())
    assert authorizer.authorize(admin_user(), lease("delete")).allowed
    assert authorizer.authorize(
        admin_user(), RequestInfo("GET", "/x", is_resource_request=False, verb="get")
    ).allowed


def test_unbound_user_is_denied_without_reason_suffix() -> None:
    decision = RBACAuthorizer(InMemoryRBACObjects()).authorize(plain_user("bob"), lease("get"))
    assert not decision.allowed
    assert decision.reason.endswith('in the namespace "kube-system"')


def test_role_binding_applies_only_in_its_namespace() -> None:
    objects = InMemoryRBACObjects(
        [
            {
                "kind": "Role",
                "metadata": {"name": "leases", "namespace": "kube-system"},
                "rules": [SEED_RULE],
            },
            role_binding("cilium", "kube-system", "Role", "leases", sa("cilium", ns=None)),
        ]
    )
    authorizer = RBACAuthorizer(objects)
    assert authorizer.authorize(CILIUM, lease("get")).allowed
    assert not authorizer.authorize(CILIUM, lease("get", ns="default")).allowed
    # A cluster-wide list is not granted by a namespaced binding.
    assert not authorizer.authorize(CILIUM, lease("list", name="", ns="")).allowed


def test_role_binding_to_cluster_role_is_scoped_to_the_binding_namespace() -> None:
    objects = InMemoryRBACObjects(
        [
            cluster_role("lease-editor", SEED_RULE),
            role_binding("cilium", "default", "ClusterRole", "lease-editor", sa("cilium")),
        ]
    )
    authorizer = RBACAuthorizer(objects)
    assert authorizer.authorize(CILIUM, lease("get", ns="default")).allowed
    assert not authorizer.authorize(CILIUM, lease("get", ns="kube-system")).allowed


def test_cluster_role_binding_cannot_reference_a_role() -> None:
    objects = InMemoryRBACObjects(
        [
            {
                "kind": "Role",
                "metadata": {"name": "r", "namespace": "kube-system"},
                "rules": [SEED_RULE],
            },
            {
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "x"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [sa("cilium")],
            },
        ]
    )
    decision = RBACAuthorizer(objects).authorize(CILIUM, lease("get"))
    assert not decision.allowed
    assert decision.reason.endswith('RBAC: role.rbac.authorization.k8s.io "r" not found')


@pytest.mark.parametrize(
    ("subject", "user", "applies"),
    [
        ({"kind": "User", "name": "alice"}, plain_user("alice"), True),
        ({"kind": "User", "name": "alice"}, plain_user("bob"), False),
        ({"kind": "Group", "name": "ops"}, plain_user("bob", ["ops"]), True),
        ({"kind": "Group", "name": "system:serviceaccounts:kube-system"}, CILIUM, True),
        ({"kind": "Group", "name": "system:serviceaccounts:default"}, CILIUM, False),
        ({"kind": "ServiceAccount", "name": "cilium", "namespace": "kube-system"}, CILIUM, True),
        ({"kind": "ServiceAccount", "name": "cilium", "namespace": "default"}, CILIUM, False),
        # A ServiceAccount subject without namespace in a ClusterRoleBinding matches nobody.
        ({"kind": "ServiceAccount", "name": "cilium"}, CILIUM, False),
        # A user named like a ServiceAccount is not one unless the name matches exactly.
        ({"kind": "User", "name": "system:serviceaccount:kube-system:cilium"}, CILIUM, True),
    ],
)
def test_subject_matching(subject: dict[str, Any], user: UserInfo, applies: bool) -> None:
    objects = InMemoryRBACObjects(
        [cluster_role("r", SEED_RULE), cluster_binding("b", "r", subject)]
    )
    assert RBACAuthorizer(objects).authorize(user, lease("get")).allowed is applies


@pytest.mark.parametrize(
    ("rule", "info", "allows"),
    [
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, lease("patch"), True),
        (
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]},
            lease("get"),
            True,
        ),
        ({"apiGroups": [""], "resources": ["leases"], "verbs": ["get"]}, lease("get"), False),
        (
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]},
            lease("update"),
            False,
        ),
        # resourceNames restrict by name; an empty name (list) never matches a named rule.
        (
            {"apiGroups": ["*"], "resources": ["leases"], "verbs": ["get"], "resourceNames": ["a"]},
            lease("get", name="a"),
            True,
        ),
        (
            {"apiGroups": ["*"], "resources": ["leases"], "verbs": ["get"], "resourceNames": ["a"]},
            lease("get", name="b"),
            False,
        ),
        (
            {
                "apiGroups": ["*"],
                "resources": ["leases"],
                "verbs": ["list"],
                "resourceNames": ["a"],
            },
            lease("list", name=""),
            False,
        ),
        # Subresources need their own rule: "services" does not cover "services/status".
        (
            {"apiGroups": [""], "resources": ["services"], "verbs": ["update"]},
            core("update", "services", "s", "d", "status"),
            False,
        ),
        (
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
            core("update", "services", "s", "d", "status"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["*/status"], "verbs": ["update"]},
            core("update", "services", "s", "d", "status"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["*/status"], "verbs": ["update"]},
            core("update", "services", "s", "d"),
            False,
        ),
        (
            {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
            core("update", "services", "s", "d"),
            False,
        ),
        (
            {"apiGroups": [""], "resources": ["*"], "verbs": ["update"]},
            core("update", "services", "s", "d", "status"),
            True,
        ),
        # Non-resource URLs: exact, or prefix with a trailing *.
        (
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            RequestInfo("GET", "/healthz", is_resource_request=False, verb="get"),
            True,
        ),
        (
            {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
            RequestInfo("GET", "/apis/cilium.io", is_resource_request=False, verb="get"),
            True,
        ),
        (
            {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
            RequestInfo("GET", "/apis", is_resource_request=False, verb="get"),
            False,
        ),
        (
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            RequestInfo("POST", "/healthz", is_resource_request=False, verb="post"),
            False,
        ),
        # A resource rule never grants a non-resource path, and the reverse.
        (
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            RequestInfo("GET", "/metrics", is_resource_request=False, verb="get"),
            False,
        ),
        ({"nonResourceURLs": ["*"], "verbs": ["*"]}, lease("get"), False),
    ],
)
def test_rule_allows(rule: dict[str, Any], info: RequestInfo, allows: bool) -> None:
    assert rule_allows(rule, info) is allows


def test_bootstrap_policy_lets_authenticated_users_discover() -> None:
    authorizer = RBACAuthorizer(InMemoryRBACObjects())
    for path in (
        "/api",
        "/api/v1",
        "/apis",
        "/apis/coordination.k8s.io/v1",
        "/version",
        "/openapi/v2",
    ):
        info = RequestInfo("GET", path, is_resource_request=False, verb="get")
        assert authorizer.authorize(CILIUM, info).allowed, path
    assert not authorizer.authorize(
        CILIUM, RequestInfo("GET", "/metrics", is_resource_request=False, verb="get")
    ).allowed
    assert (
        not RBACAuthorizer(InMemoryRBACObjects(), builtin=())
        .authorize(CILIUM, RequestInfo("GET", "/api", is_resource_request=False, verb="get"))
        .allowed
    )


def test_bootstrap_policy_objects_are_storable_rbac_objects() -> None:
    kinds = {obj["kind"] for obj in bootstrap_policy()}
    assert kinds == {"ClusterRole", "ClusterRoleBinding"}
    for obj in bootstrap_policy():
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert obj["metadata"]["name"]


def test_stored_object_shadows_builtin_of_same_name() -> None:
    # An operator who empties system:discovery in the store loses discovery, as on a real cluster.
    objects = InMemoryRBACObjects([cluster_role("system:discovery")])
    info = RequestInfo("GET", "/api", is_resource_request=False, verb="get")
    assert not RBACAuthorizer(objects).authorize(CILIUM, info).allowed


class FakeStore:
    """The shape of the server's Store that StoreRBACObjects reads: buckets "<group>/<plural>"."""

    def __init__(self, buckets: dict[str, list[dict[str, Any]]]) -> None:
        self.buckets = buckets
        self.reads: list[tuple[str, str]] = []

    def objects(self, resource: str, namespace: str = "") -> tuple[list[dict[str, Any]], int]:
        self.reads.append((resource, namespace))
        objs = [
            o
            for o in self.buckets.get(resource, [])
            if not namespace or o["metadata"].get("namespace", "") == namespace
        ]
        return objs, 42


def test_store_adapter_reads_the_rbac_buckets_live() -> None:
    store = FakeStore(
        {
            "rbac.authorization.k8s.io/clusterroles": [cluster_role("cilium")],
            "rbac.authorization.k8s.io/clusterrolebindings": [
                cluster_binding("cilium", "cilium", sa("cilium"))
            ],
        }
    )
    authorizer = RBACAuthorizer(StoreRBACObjects(store))
    assert not authorizer.authorize(CILIUM, lease("get")).allowed
    store.buckets["rbac.authorization.k8s.io/clusterroles"] = [cluster_role("cilium", SEED_RULE)]
    assert authorizer.authorize(CILIUM, lease("get")).allowed
    assert ("rbac.authorization.k8s.io/rolebindings", "kube-system") in store.reads
