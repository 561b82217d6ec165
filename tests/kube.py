"""The real Kubernetes control plane under the integration tests, and each test's own corner of it.

One control plane (etcd, kube-apiserver, kube-controller-manager from ``lab/go/``) serves the
whole test session, on free loopback ports. Tests stay independent by owning fresh names: each
gets a ``Kube`` with its own namespace (where its agents keep their leases) and a prefix for the
cluster-scoped objects it makes (Nodes, policies, ClusterRoles...), all removed afterwards.

The apiserver writes an audit log (``audit.log``): every request on Leases with its user, verb,
object, response code and, for writes, the Lease it left. It is the server's own account of who
wrote which lease when, which the lease-safety checks read (``tests/integration/agent/cluster.py``).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from lab.controlplane import ControlPlane, binaries, write_kubeconfig

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
CRD = DEPLOY / "crds" / "ciliuml2announcementpolicies.yaml"

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "RequestResponse",
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
            "verbs": ["create", "update", "patch", "delete"],
        },
        # Every request of the identities under test (the agents' ServiceAccounts): what they
        # asked for and whether it was allowed.
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {
            "level": "Metadata",
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
        },
        {"level": "None"},
    ],
}


def start_control_plane(
    directory: Path,
    apiserver_args: Sequence[str] = (),
    audit_policy: Mapping[str, Any] = AUDIT_POLICY,
) -> ControlPlane:
    """A control plane for a test session, with the policy CRD installed and established."""
    cp = ControlPlane(
        directory, binaries(say=print), audit_policy=audit_policy, apiserver_args=apiserver_args
    ).start()
    try:
        cp.kubectl("apply", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=established", "--timeout=60s", "-f", str(CRD))
        # Established is not listable yet: until its watch cache is filled, a list of the
        # policies gets 429 "storage is (re)initializing".
        policies = "/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies"
        until(lambda: cp.get(policies)[0] == 200, 60.0, "the policies listable")
    except BaseException:
        cp.stop()  # its processes run in their own sessions: nothing else would stop them
        raise
    print(f"control plane ready in {cp.timings['ready']:.1f}s: {cp.url}")
    return cp


def admin_client(cp: ControlPlane) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cp.admin_kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


@dataclass
class AuditEvent:
    """One finished request from the audit log."""

    time: float  # when the apiserver received it (epoch seconds)
    done: float  # when it answered (stageTimestamp)
    user: str
    verb: str
    resource: str  # "leases", "services"...; "" for a non-resource URL
    namespace: str
    name: str
    code: int
    response: dict[str, Any] | None  # the object a write left (RequestResponse level)
    subresource: str = ""  # "status", "exec"...


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Kube:
    """A test's view of the shared control plane: its namespace, its name prefix, an admin
    client, and credentials for the identities it makes."""

    cp: ControlPlane
    work: Path
    namespace: str
    prefix: str
    api: client.ApiClient
    _cleanup: list[Callable[[], object]] = field(default_factory=list)
    # The session's audit log, read incrementally from where it ended when the test began.
    _audit_at: int = 0
    _audit_events: list[AuditEvent] = field(default_factory=list)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    @property
    def discovery(self) -> client.DiscoveryV1Api:
        return client.DiscoveryV1Api(self.api)

    @property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    def name(self, base: str) -> str:
        """A cluster-scoped name of this test's own."""
        return f"{self.prefix}-{base}"

    def on_cleanup(self, undo: Callable[[], object]) -> None:
        self._cleanup.append(undo)

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = False) -> Any:  # fmt: skip
        if kubeconfig is None:
            return self.cp.kubectl(*args, input=input, check=check)
        import subprocess

        return subprocess.run(
            [str(self.cp.kubectl_path), f"--kubeconfig={kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def service_account(self, name: str, roles: list[tuple[str, str]] = ()) -> Path:  # type: ignore[assignment]
        """A ServiceAccount ``name`` in this test's namespace, bound to each (kind, name) role of
        ``roles`` (ClusterRole bindings are cluster-scoped and named with the prefix), and a
        kubeconfig holding a token the apiserver minted for it."""
        ns = self.namespace
        self.cp.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": name, "namespace": ns}})  # fmt: skip
        subject = [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
        for kind, role in roles:
            ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}
            if kind == "ClusterRole":
                binding = self.name(f"{role}-{name}")
                self.cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1",
                               "kind": "ClusterRoleBinding", "metadata": {"name": binding},
                               "roleRef": ref, "subjects": subject})  # fmt: skip
                self.on_cleanup(functools.partial(self.rbac.delete_cluster_role_binding, binding))
            else:
                self.cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                               "metadata": {"name": f"{role}-{name}", "namespace": ns},
                               "roleRef": ref, "subjects": subject})  # fmt: skip
        token = self.cp.service_account_token(ns, name)
        return write_kubeconfig(self.work / f"{name}.kubeconfig", self.cp.url, self.cp.pki.ca_cert,
                                name, token=token, namespace=ns)  # fmt: skip

    def user(self, service_account: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{service_account}"

    def audit(self, since: float = 0.0, resource: str | None = "leases",
              anywhere: bool = False) -> list[AuditEvent]:  # fmt: skip
        """Finished requests on ``resource`` (None: any) in this test's namespace (``anywhere``:
        in any namespace or none), received since this test began (and since ``since``), in the
        order they were received. Lease requests are logged for every user; other requests only
        for ServiceAccounts. A request appears once the apiserver has written its line."""
        self._read_audit()
        events = [
            e
            for e in self._audit_events
            if e.time >= since
            and (anywhere or e.namespace == self.namespace)
            and (resource is None or e.resource == resource)
        ]
        events.sort(key=lambda ev: ev.time)
        return events

    def _read_audit(self) -> None:
        """Parse what the session's audit log gained since the last call (whole lines only)."""
        try:
            f = self.cp.audit_log.open("rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(self._audit_at)
            data = f.read()
        complete = data.rfind(b"\n") + 1  # the apiserver may be writing the last line
        first, self._audit_at = self._audit_at, self._audit_at + complete
        for i, line in enumerate(data[:complete].splitlines()):
            try:
                e = json.loads(line)
            except ValueError:
                if i == 0 and first > 0:
                    continue  # the test began while that line was being written
                raise
            if e.get("stage") != "ResponseComplete":
                continue
            ref = e.get("objectRef") or {}
            self._audit_events.append(
                AuditEvent(
                    time=_epoch(e["requestReceivedTimestamp"]),
                    done=_epoch(e["stageTimestamp"]),
                    user=e["user"]["username"],
                    verb=e["verb"],
                    resource=ref.get("resource", ""),
                    namespace=ref.get("namespace", ""),
                    name=ref.get("name", ""),
                    code=int((e.get("responseStatus") or {}).get("code", 0)),
                    response=e.get("responseObject"),
                    subresource=ref.get("subresource", ""),
                )
            )

    def close(self) -> None:
        """Undo what the test registered, then delete its namespace; one failing undo (a
        connection error as well as an API error) never keeps the rest from running."""
        try:
            for undo in reversed(self._cleanup):
                with contextlib.suppress(Exception):
                    undo()
            with contextlib.suppress(Exception):
                self.core.delete_namespace(self.namespace)
        finally:
            self.api.close()  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def kube_for_test(cp: ControlPlane, work: Path) -> Iterator[Kube]:
    tag = secrets.token_hex(3)
    api = admin_client(cp)
    namespace = f"t-{tag}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
    kube = Kube(cp, work, namespace, f"t{tag}", api)
    with contextlib.suppress(FileNotFoundError):
        kube._audit_at = cp.audit_log.stat().st_size
    try:
        yield kube
    finally:
        kube.close()


def pinned_kubernetes_version() -> str:
    """The k8s.io/kubernetes release lab/go/kubernetes/go.mod pins: what the lab and the tests
    run, and the Kubernetes version the chart is rendered for."""
    gomod = (REPO / "lab" / "go" / "kubernetes" / "go.mod").read_text()
    m = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)", gomod, re.M)
    assert m, gomod
    return m.group(1)


def until(pred: Callable[[], bool], timeout: float, what: str = "condition") -> float:
    """Seconds until ``pred`` held; an AssertionError naming ``what`` if not within ``timeout``."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start
