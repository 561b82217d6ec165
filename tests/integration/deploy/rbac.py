"""The agent's ServiceAccount and RBAC, applied for real to the session's control plane: from
deploy/ (the plain manifests) or from a chart render.

The control plane is shared, so the objects are applied as copies: namespaced objects move to the
test's namespace and cluster-scoped ones take the test's prefix; nothing else in them changes, so
the rules under test are the shipped rules. The token is minted by the server (TokenRequest), as
the kubelet mints a pod's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.controlplane import write_kubeconfig
from tests.kube import Kube, until
from tests.unit.deploy.manifests import DEPLOY, NAMESPACE, Obj, load_docs, rules

SA = "l2announcer"
RBAC_FILES = ("serviceaccount", "clusterrole", "clusterrolebinding", "role", "rolebinding")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


def moved(kube: Kube, objects: list[Obj], namespace: str = NAMESPACE) -> list[Obj]:
    """The RBAC objects among ``objects`` (made for ``namespace``), moved to this test's
    namespace and prefix."""
    found = [obj for obj in objects if obj["kind"] in RBAC_KINDS]
    for obj in found:
        meta = obj["metadata"]
        if obj["kind"] in CLUSTER_SCOPED:
            meta["name"] = kube.name(meta["name"])
        else:
            assert meta["namespace"] == namespace
            meta["namespace"] = kube.namespace
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] = kube.name(obj["roleRef"]["name"])
        for subject in obj.get("subjects", ()):
            assert subject["namespace"] == namespace
            subject["namespace"] = kube.namespace
    return found


def shipped_rbac(kube: Kube) -> list[Obj]:
    """The ServiceAccount and RBAC files of deploy/, moved to this test's namespace and prefix."""
    return moved(kube, load_docs(DEPLOY / f"{name}.yaml" for name in RBAC_FILES))


def apply(kube: Kube, objects: list[Obj]) -> list[str]:
    done = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    assert done.returncode == 0, done.stderr
    return list(done.stdout.splitlines())


@dataclass
class Agent:
    """The agent's ServiceAccount in a test's namespace, with RBAC bound to it."""

    kube: Kube
    objects: list[Obj]
    kubeconfig: Path

    @property
    def user(self) -> str:
        return self.kube.user(SA)

    def of_kind(self, kind: str) -> Obj:
        (obj,) = (o for o in self.objects if o["kind"] == kind)
        return obj

    def can_i(
        self, verb: str, resource: str, namespace: str | None = None, subresource: str | None = None
    ) -> bool:
        """`kubectl auth can-i ... --as=<the agent>` (a SubjectAccessReview), as the admin;
        no namespace: `--all-namespaces`."""
        args = ["auth", "can-i", verb, resource, f"--as={self.user}"]
        args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
        if subresource:
            args.append(f"--subresource={subresource}")
        answer = str(self.kube.kubectl(*args).stdout).strip()
        assert answer in {"yes", "no"}, answer
        return answer == "yes"


def bind(kube: Kube, objects: list[Obj]) -> Agent:
    """Apply ``objects`` (moved already), removed with the test; the agent's kubeconfig with a
    token the server minted; returns once the server's authorizer applies the roles."""
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ClusterRole":
            kube.on_cleanup(functools.partial(kube.rbac.delete_cluster_role, name))
        if obj["kind"] == "ClusterRoleBinding":
            kube.on_cleanup(functools.partial(kube.rbac.delete_cluster_role_binding, name))
    apply(kube, objects)
    token = kube.cp.service_account_token(kube.namespace, SA)
    kubeconfig = write_kubeconfig(
        kube.work / f"{SA}.kubeconfig",
        kube.cp.url,
        kube.cp.pki.ca_cert,
        SA,
        token=token,
        namespace=kube.namespace,
    )
    a = Agent(kube, objects, kubeconfig)
    # The authorizer reads roles and bindings from its informers: new ones count a moment later.
    # One rule of each role is enough to tell.
    probes = []
    for kind in ("ClusterRole", "Role"):
        granted = sorted(r for r in rules(a.of_kind(kind)) if "=" not in r[1])  # unnamed
        if granted:
            group, resource, verb = granted[0]
            name, _, sub = resource.partition("/")
            probes.append((verb, f"{name}.{group}" if group else name, sub or None, kind))
    until(
        lambda: all(
            a.can_i(verb, res, kube.namespace if kind == "Role" else None, sub)
            for verb, res, sub, kind in probes
        ),
        10.0,
        "the RBAC in force",
    )
    return a
