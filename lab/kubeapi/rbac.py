"""RBAC authorization from stored Roles and bindings, with the real apiserver's 403 wording.

The agent's most common field failure is a ClusterRole without lease verbs; the seed's runbook
tells operators to grep for the exact 403 text. So this module reproduces both the decision and
the message of kube-apiserver's RBAC authorizer (plugin/pkg/auth/authorizer/rbac):

- Rules come from ClusterRoleBindings (cluster-wide) and, for a namespaced request, RoleBindings
  in that namespace; a RoleBinding may reference a Role in its own namespace or a ClusterRole.
- Subjects match by user name, group, or ServiceAccount (namespace defaulting to the binding's).
- A rule allows when verb, API group, resource (``resource/subresource``, ``*``, ``*/sub``) and
  resource name all match; non-resource requests match ``nonResourceURLs`` (``*`` suffix = prefix).
- ``system:masters`` is always allowed (the apiserver's privileged-group authorizer).
- A binding whose role is missing contributes ``RBAC: clusterrole.rbac.authorization.k8s.io "x"
  not found`` to the denial, as the real server appends it.

Objects are read through :class:`RBACObjects` on every request, so an edited ClusterRole takes
effect on the next call: no cache can hide an update. The store implements the protocol; the
objects it returns are only read, never modified.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from lab.kubeapi import status_bodies
from lab.kubeapi.auth import MASTERS, service_account_username
from lab.kubeapi.pipeline import Decision, RequestInfo, UserInfo

RBAC_GROUP = "rbac.authorization.k8s.io"

ROLES = "roles"
ROLE_BINDINGS = "rolebindings"
CLUSTER_ROLES = "clusterroles"
CLUSTER_ROLE_BINDINGS = "clusterrolebindings"

Obj = Mapping[str, Any]


class RBACObjects(Protocol):
    """Read access to stored RBAC objects as plain dicts (the JSON form of the API objects).

    `resource` is one of ``roles``, ``rolebindings``, ``clusterroles``, ``clusterrolebindings``.
    `namespace` None lists cluster-scoped objects or namespaced ones in every namespace; a
    namespace name lists only that namespace's objects.
    """

    def list_objects(self, resource: str, namespace: str | None = None) -> Sequence[Obj]: ...


class InMemoryRBACObjects:
    """A minimal RBACObjects for unit tests and servers without a store. Thread-safe."""

    def __init__(self, objects: Iterable[Obj] = ()) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str], Obj] = {}
        for obj in objects:
            self.put(obj)

    @staticmethod
    def _resource_of(obj: Obj) -> str:
        kind = str(obj.get("kind", ""))
        resource = {
            "Role": ROLES,
            "RoleBinding": ROLE_BINDINGS,
            "ClusterRole": CLUSTER_ROLES,
            "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
        }.get(kind)
        if resource is None:
            raise ValueError(f"not an RBAC object kind: {kind!r}")
        return resource

    def put(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = (self._resource_of(obj), str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            self._objects[key] = obj

    def delete(self, kind: str, name: str, namespace: str = "") -> bool:
        resource = self._resource_of({"kind": kind})
        with self._lock:
            return self._objects.pop((resource, namespace, name), None) is not None

    def list_objects(self, resource: str, namespace: str | None = None) -> Sequence[Obj]:
        with self._lock:
            return [
                obj
                for (res, ns, _), obj in self._objects.items()
                if res == resource and (namespace is None or ns == namespace)
            ]


class ObjectStore(Protocol):
    """What StoreRBACObjects needs from the server's store."""

    def objects(self, resource: str, namespace: str = "") -> tuple[list[dict[str, Any]], int]: ...


class StoreRBACObjects:
    """RBACObjects over the server's Store (buckets keyed ``<group>/<plural>``), read live."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def list_objects(self, resource: str, namespace: str | None = None) -> Sequence[Obj]:
        objects, _ = self._store.objects(f"{RBAC_GROUP}/{resource}", namespace or "")
        return objects


# -- messages ------------------------------------------------------------------------------------


def _sanitize(text: str) -> str:
    """The apiserver escapes these so a 403 body never looks like HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def forbidden_reason(user: UserInfo, info: RequestInfo) -> str:
    """The authorizer's sentence: ``User "u" cannot get resource "leases" in API group ...``."""
    if not info.is_resource_request:
        return f'User "{user.name}" cannot {info.verb} path "{info.path}"'
    resource = info.resource
    if info.subresource:
        resource = f"{resource}/{info.subresource}"
    where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    return (
        f'User "{user.name}" cannot {info.verb} resource "{resource}" '
        f'in API group "{info.api_group}" {where}'
    )


def forbidden_message(user: UserInfo, info: RequestInfo, reason: str = "") -> str:
    """The whole Status message of a 403, as responsewriters.Forbidden + errors.NewForbidden.

    ``leases.coordination.k8s.io "x" is forbidden: User ...`` with a name; ``services is
    forbidden: ...`` without one (list, create); ``forbidden: User ... cannot get path "/x"`` for
    a non-resource request. An authorizer `reason` is appended after ``: ``.
    """
    text = _sanitize(forbidden_reason(user, info))
    if reason:
        text = f"{text}: {reason}"
    if not info.is_resource_request or (not info.resource and not info.api_group):
        return f"forbidden: {text}"
    qualified = status_bodies.qualified_resource(info.api_group, info.resource)
    if not info.name:
        return f"{qualified} is forbidden: {text}"
    return f'{qualified} "{info.name}" is forbidden: {text}'


def forbidden_status(message: str, info: RequestInfo) -> dict[str, Any]:
    """The 403 Status object carrying `message` (details: name, group, kind = plural resource)."""
    details = status_bodies.details_for(info) if info.is_resource_request else {}
    return status_bodies.status_dict(403, "Forbidden", message, details)


# -- rule matching -------------------------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value]


def verb_matches(rule: Obj, verb: str) -> bool:
    return any(v in ("*", verb) for v in _strings(rule.get("verbs")))


def api_group_matches(rule: Obj, group: str) -> bool:
    return any(g in ("*", group) for g in _strings(rule.get("apiGroups")))


def resource_matches(rule: Obj, combined: str, subresource: str) -> bool:
    """``*``, the exact ``resource[/subresource]``, or ``*/<subresource>``."""
    for res in _strings(rule.get("resources")):
        if res in ("*", combined):
            return True
        if subresource and res == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Obj, name: str) -> bool:
    names = _strings(rule.get("resourceNames"))
    return not names or name in names


def non_resource_url_matches(rule: Obj, path: str) -> bool:
    for url in _strings(rule.get("nonResourceURLs")):
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: Obj, info: RequestInfo) -> bool:
    if info.is_resource_request:
        combined = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
        return (
            verb_matches(rule, info.verb)
            and api_group_matches(rule, info.api_group)
            and resource_matches(rule, combined, info.subresource)
            and resource_name_matches(rule, info.name)
        )
    return verb_matches(rule, info.verb) and non_resource_url_matches(rule, info.path)


def subject_applies(user: UserInfo, subject: Obj, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = str(subject.get("name", ""))
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = str(subject.get("namespace") or binding_namespace)
        if not namespace:
            return False
        return user.name == service_account_username(namespace, name)
    return False


# -- bootstrap policy ----------------------------------------------------------------------------


def _bootstrap_metadata(name: str) -> dict[str, Any]:
    """What the apiserver stamps on the default policy objects it creates (and reconciles)."""
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": _bootstrap_metadata(name),
        "rules": rules,
    }


def _cluster_role_binding(name: str, role: str, groups: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _bootstrap_metadata(name),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
    }


def bootstrap_policy() -> list[dict[str, Any]]:
    """The default roles every cluster has that matter here: cluster-admin for system:masters,
    discovery and version for every authenticated user (so kubectl with a ServiceAccount
    kubeconfig can discover resources before it is denied the interesting ones)."""
    health = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    return [
        _cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_role(
            "system:discovery",
            [
                {
                    "nonResourceURLs": [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/openapi",
                        "/openapi/*",
                        *health,
                    ],
                    "verbs": ["get"],
                }
            ],
        ),
        _cluster_role("system:public-info-viewer", [{"nonResourceURLs": health, "verbs": ["get"]}]),
        _cluster_role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                }
            ],
        ),
        _cluster_role_binding("cluster-admin", "cluster-admin", [MASTERS]),
        _cluster_role_binding("system:discovery", "system:discovery", ["system:authenticated"]),
        _cluster_role_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            ["system:authenticated", "system:unauthenticated"],
        ),
        _cluster_role_binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
    ]


# -- the authorizer ------------------------------------------------------------------------------


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message bare, several deduplicated in [a, b]."""
    if len(errors) == 1:
        return errors[0]
    unique = list(dict.fromkeys(errors))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


class RBACAuthorizer:
    """pipeline.Authorizer over stored RBAC objects (plus the built-in bootstrap policy)."""

    def __init__(
        self,
        objects: RBACObjects,
        builtin: Iterable[Obj] | None = None,
        privileged_groups: Iterable[str] = (MASTERS,),
    ) -> None:
        self._objects = objects
        self._builtin = InMemoryRBACObjects(bootstrap_policy() if builtin is None else builtin)
        self._privileged = frozenset(privileged_groups)

    def _list(self, resource: str, namespace: str | None) -> list[Obj]:
        seen: set[tuple[str, str]] = set()
        out: list[Obj] = []
        # Stored objects shadow built-in ones of the same name (an edited cluster-admin wins).
        for source in (self._objects, self._builtin):
            for obj in source.list_objects(resource, namespace):
                key = (_namespace(obj), _name(obj))
                if key not in seen:
                    seen.add(key)
                    out.append(obj)
        return out

    def _roles_by_name(self, resource: str, namespace: str) -> dict[str, Obj]:
        """Roles of `namespace` (ClusterRoles: "") by name; the first listed wins, as in _list."""
        by_name: dict[str, Obj] = {}
        for role in self._list(resource, namespace or None):
            by_name.setdefault(_name(role), role)
        return by_name

    def _role_rules(
        self, role_ref: Obj, binding_namespace: str, roles: Callable[[str, str], dict[str, Obj]]
    ) -> tuple[list[Obj], str]:
        """The rules a roleRef points at, or an error message as the listers word it.

        `roles` is :meth:`_roles_by_name`, cached for the request."""
        kind = role_ref.get("kind")
        name = str(role_ref.get("name", ""))
        if kind == "ClusterRole":
            found = roles(CLUSTER_ROLES, "").get(name)
            if found is None:
                return [], f'clusterrole.{RBAC_GROUP} "{name}" not found'
        elif kind == "Role":
            # A ClusterRoleBinding cannot hold a Role; the lister then finds none, as for real.
            found = roles(ROLES, binding_namespace).get(name) if binding_namespace else None
            if found is None:
                return [], f'role.{RBAC_GROUP} "{name}" not found'
        else:
            return [], f'unsupported role reference kind: "{kind}"'
        return list(found.get("rules") or []), ""

    def _bindings(self, namespace: str) -> Iterable[tuple[Obj, str]]:
        for binding in self._list(CLUSTER_ROLE_BINDINGS, None):
            yield binding, ""
        if namespace:
            for binding in self._list(ROLE_BINDINGS, namespace):
                yield binding, namespace

    def authorize(self, user: UserInfo, info: RequestInfo) -> Decision:
        if self._privileged.intersection(user.groups):
            return Decision(allowed=True)
        errors: list[str] = []
        # Bindings mostly name roles of one list (every ClusterRoleBinding a ClusterRole): read
        # each list once per request, not once per binding. Still once per request, so an edited
        # role counts from the next call.
        roles = functools.cache(self._roles_by_name)
        for binding, binding_namespace in self._bindings(info.namespace):
            subjects = binding.get("subjects") or []
            if not any(subject_applies(user, s, binding_namespace) for s in subjects):
                continue
            role_ref = binding.get("roleRef") or {}
            rules, error = self._role_rules(role_ref, binding_namespace, roles)
            if error:
                errors.append(error)
                continue
            if any(rule_allows(rule, info) for rule in rules):
                return Decision(allowed=True)
        reason = f"RBAC: {_aggregate(errors)}" if errors else ""
        return Decision(allowed=False, reason=forbidden_message(user, info, reason))
