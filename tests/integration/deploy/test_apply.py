"""deploy/ against the real kube-apiserver: every file passes the server's own validation
(`kubectl apply --dry-run=server --validate=strict`), and the ServiceAccount with the shipped
RBAC, applied for real (tests/integration/deploy/rbac.py), is granted exactly the shipped rules,
and serves every request the agent's own code makes while refusing others with 403.
test_permissions.py holds the `kubectl auth can-i` lists of what it may and may not do.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.k8s.client import make_api_client
from agent.k8s.leases import KubernetesLeaseAPI
from agent.k8s.objects import POLICY_GROUP, POLICY_PLURAL, POLICY_VERSION, sources
from agent.k8s.policy_status import kubernetes_patch
from agent.k8s.reflector import ApiStatusError
from agent.k8s.service_status import kubernetes_writers
from agent.leases.api import Forbidden
from agent.leases.record import LeaseRecord, micro_time
from lab.controlplane import ControlPlane
from tests.integration.deploy.chart import render
from tests.integration.deploy.rbac import SA, Agent, apply, bind, moved, shipped_rbac
from tests.kube import Kube, until
from tests.unit.deploy.manifests import CRDS, DEPLOY, NAMESPACE, Obj, load_docs, one, rules

LEASE = "cilium-l2announce-default-service-red"  # the seed's example lease
POLICY = (POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL)


# -- every file, validated by the server --------------------------------------------------------


def test_every_file_of_deploy_passes_the_servers_dry_run(control_plane: ControlPlane) -> None:
    cp = control_plane
    # The CRD first, established (the session fixture applied this very file), so that its
    # policies would be accepted; kube-system exists on every cluster.
    crd = cp.kubectl("wait", "--for=condition=established", "--timeout=60s", "-f", str(CRDS))
    assert crd.returncode == 0, crd.stderr
    done = cp.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        str(CRDS),
        "-f",
        str(DEPLOY),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no warning: no unknown, deprecated or dropped field
    lines = done.stdout.splitlines()
    assert all(line.endswith("(server dry run)") for line in lines), lines
    objects = load_docs(CRDS.glob("*.yaml")) + load_docs(DEPLOY.glob("*.yaml"))
    assert len(lines) == len(objects), lines
    named = {line.split()[0].split("/", 1)[1] for line in lines}
    assert named == {o["metadata"]["name"] for o in objects}


# -- the shipped RBAC, applied for real ----------------------------------------------------------


@pytest.fixture
def agent(kube: Kube) -> Agent:
    return bind(kube, shipped_rbac(kube))


@pytest.fixture
def agent_api(agent: Agent) -> Iterator[Any]:
    """An API client built the way the agent builds its own, from the agent's kubeconfig."""
    api = make_api_client(str(agent.kubeconfig), qps=50, burst=100)
    try:
        yield api
    finally:
        api.close()


def test_applying_the_shipped_rbac_again_changes_nothing(agent: Agent) -> None:
    # What `kubectl apply -f deploy/` does on an upgrade with unchanged files.
    again = apply(agent.kube, agent.objects)
    assert all(line.endswith(" unchanged") for line in again), again


def _granted(review: Any) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples of a SelfSubjectRulesReview's resource rules."""
    granted: set[tuple[str, str, str]] = set()
    for rule in review.status.resource_rules:
        names = rule.resource_names
        for group in rule.api_groups or ():
            for resource in rule.resources or ():
                for verb in rule.verbs:
                    for named in [f"{resource}={n}" for n in names] if names else [resource]:
                        granted.add((group, named, verb))
    return granted


def test_the_server_grants_the_agent_exactly_the_shipped_rules(agent: Agent) -> None:
    kube = agent.kube
    # A ServiceAccount without any binding: what every authenticated identity may do anyway
    # (discovery, self reviews), which is not the shipped RBAC's doing.
    nobody = kube.service_account("nobody")

    def granted(kubeconfig: Path, namespace: str) -> set[tuple[str, str, str]]:
        api = make_api_client(str(kubeconfig), qps=50, burst=100)
        try:
            review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
                {"spec": {"namespace": namespace}}  # type: ignore[arg-type]
            )
        finally:
            api.close()
        return _granted(review)

    cluster_rules = rules(agent.of_kind("ClusterRole"))
    lease_rules = rules(agent.of_kind("Role"))
    for namespace, expected in [
        (kube.namespace, cluster_rules | lease_rules),
        ("default", cluster_rules),  # leases only in the agent's own namespace
        (NAMESPACE, cluster_rules),
    ]:
        base = granted(nobody, namespace)
        assert granted(agent.kubeconfig, namespace) - base == expected, namespace


def test_policy_status_only_through_the_status_subresource(agent: Agent) -> None:
    policies = "ciliuml2announcementpolicies.cilium.io"
    assert agent.can_i("patch", policies, subresource="status")
    assert not agent.can_i("update", policies, subresource="status")
    assert not agent.can_i("patch", policies)


def _service(kube: Kube, name: str) -> Obj:
    body: Obj = {
        "metadata": {"name": name, "namespace": kube.namespace},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80}]},
    }
    created: Obj = kube.core.create_namespaced_service(kube.namespace, body).to_dict()  # type: ignore[arg-type]
    return created


def _policy(kube: Kube, name: str, spec: Obj | None = None) -> None:
    body = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": name},
        "spec": spec or {},
    }
    kube.custom.create_cluster_custom_object(*POLICY, body)
    kube.on_cleanup(lambda: kube.custom.delete_cluster_custom_object(*POLICY, name))


def _watch_sees(source: Any, rv: str, name: str, make: Callable[[], None]) -> Obj:
    """Start the agent's watch from ``rv``, make object ``name`` (as admin) and return the
    watch's event for it."""
    stop = threading.Event()
    found: list[Obj] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            for event in source.watch(rv, stop):
                if event["object"]["metadata"]["name"] == name:
                    found.append(event)
                    break
        except BaseException as e:  # a 403 surfaces here
            errors.append(e)
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    make()
    done.wait(10.0)
    stop.set()
    source.interrupt()
    reader.join(5.0)
    assert found, f"the {source.description} watch did not see {name}: {errors}"
    return found[0]


def test_the_agents_own_requests_succeed(agent: Agent, agent_api: Any) -> None:
    """Every request the agent makes, made by the agent's own code with the agent's token."""
    kube = agent.kube
    node = kube.name("node1")
    kube.on_cleanup(lambda: kube.core.delete_node(node))
    srcs = sources(agent_api, node, kube.namespace)

    # Lists and watches (reflectors): each watch sees an object made after its list.
    def make_service() -> None:
        _service(kube, "red")

    def make_node() -> None:
        kube.core.create_node({"metadata": {"name": node}})  # type: ignore[arg-type]

    def make_policy() -> None:
        _policy(kube, kube.name("policy1"), {"loadBalancerIPs": True})

    def make_pod() -> None:
        until(
            lambda: bool(
                kube.core.list_namespaced_service_account(
                    kube.namespace, field_selector="metadata.name=default"
                ).items
            ),
            30.0,
            "the namespace's default ServiceAccount",
        )
        kube.core.create_namespaced_pod(
            kube.namespace,
            {  # type: ignore[arg-type]
                "metadata": {"name": "web"},
                "spec": {
                    "nodeName": node,
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "web", "image": "registry.example/web"}],
                },
            },
        )

    def make_lease() -> None:
        kube.coordination.create_namespaced_lease(
            kube.namespace,
            {  # type: ignore[arg-type]
                "metadata": {"name": "cilium-l2announce-other-blue"},
                "spec": {"holderIdentity": "node2", "leaseDurationSeconds": 15},
            },
        )

    def make_endpoint_slice() -> None:
        kube.discovery.create_namespaced_endpoint_slice(
            kube.namespace,
            {  # type: ignore[arg-type]
                "metadata": {
                    "name": "red-1",
                    "labels": {
                        "kubernetes.io/service-name": "red",
                        "endpointslice.kubernetes.io/managed-by": "test.l2announcer.io",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": node}],
            },
        )

    makers = {
        "services": ("red", make_service),
        "endpointslices": ("red-1", make_endpoint_slice),
        "nodes": (node, make_node),
        "policies": (kube.name("policy1"), make_policy),
        "pods": ("web", make_pod),
        "leases": ("cilium-l2announce-other-blue", make_lease),
    }
    assert set(makers) == set(srcs)
    # Pods only with pod announcements, which deploy/ leaves off: the pod reflector is refused
    # until the chart's rule for them (l2podAnnouncements.enabled) is applied.
    with pytest.raises(ApiStatusError) as refused:
        srcs["pods"].list()
    assert refused.value.status == 403
    rendered = render(kube.work / "helm", sets=("l2podAnnouncements.enabled=true",))
    apply(kube, [one("ClusterRole", moved(kube, rendered))])
    until(lambda: agent.can_i("watch", "pods"), 10.0, "the pods rule in force")
    for table, source in srcs.items():
        _, rv = source.list()
        name, make = makers[table]
        assert _watch_sees(source, rv, name, make)["type"] == "ADDED", table

    # The elector's leases, in the agent's namespace.
    leases = KubernetesLeaseAPI(agent_api, kube.namespace)
    now = micro_time(1_700_000_000.0)
    record = LeaseRecord("node1", 15, now, now, 0)
    created = leases.create(LEASE, record, timeout=10)
    assert leases.get(LEASE, timeout=10) == created
    released = leases.update(
        LEASE, LeaseRecord("", 1, now, now, 0, created.resource_version), timeout=10
    )
    assert released.holder == ""
    # The lease GC lists and deletes the released lease (and leaves node2's held one).
    assert leases.collect_garbage() == 1
    assert leases.get(LEASE, timeout=10) is None

    # Policy conditions, through the status subresource.
    patch = kubernetes_patch(agent_api)
    condition = {
        "type": "io.cilium/bad-interface-regex",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": "2023-05-12T15:39:01Z",
        "reason": "error",
        "message": "error parsing regexp: missing closing ]: `[eth`",
    }
    patch(kube.name("policy1"), [condition])
    stored: Any = kube.custom.get_cluster_custom_object(*POLICY, kube.name("policy1"))
    assert stored["status"]["conditions"] == [condition]

    # The Announcing event on the Service, which names it by uid; the Service is only read.
    look_up, record_event = kubernetes_writers(agent_api, "node1")
    uid = look_up(kube.namespace, "red")
    svc: Any = kube.core.read_namespaced_service("red", kube.namespace)
    assert uid is not None and uid == svc.metadata.uid
    assert look_up(kube.namespace, "no-such-service") is None
    record_event(kube.namespace, "red", uid, "Announcing", "node1 announces the service")
    events = kube.core.list_namespaced_event(kube.namespace).items
    assert [(e.reason, e.involved_object.name) for e in events] == [("Announcing", "red")]


@pytest.mark.parametrize("wall", [1_700_000_000.0, 1_700_000_000.25])
def test_lease_times_on_a_whole_second_reach_the_server_as_written(
    agent: Agent, agent_api: Any, wall: float
) -> None:
    """The client's pydantic models re-serialise a time with isoformat(), which drops a .000000
    fraction; the server refuses such a MicroTime (400). One renew in a million lands on a
    whole second, every renew does under a fake clock."""
    leases = KubernetesLeaseAPI(agent_api, agent.kube.namespace)
    stamp = micro_time(wall)
    created = leases.create(LEASE, LeaseRecord("node1", 15, stamp, stamp, 0), timeout=10)
    renewed = leases.update(
        LEASE,
        LeaseRecord("node1", 15, stamp, micro_time(wall + 1), 0, created.resource_version),
        timeout=10,
    )
    stored: Any = agent.kube.coordination.read_namespaced_lease(LEASE, agent.kube.namespace)
    assert (created.acquire_time, renewed.renew_time) == (stamp, micro_time(wall + 1))
    assert stored.spec.renew_time.timestamp() == wall + 1


def _status(call: Any, *args: Any, **kwargs: Any) -> int:
    try:
        call(*args, **kwargs)
    except client.ApiException as e:
        return int(e.status)
    return 200


def test_the_agents_token_is_refused_anything_more(agent: Agent, agent_api: Any) -> None:
    """Real requests beyond the agent's needs, with the agent's token: each one 403."""
    kube = agent.kube
    name = kube.name("policy1")
    _policy(kube, name)
    _service(kube, "red")
    kube.coordination.create_namespaced_lease(
        kube.namespace,
        {  # type: ignore[arg-type]
            "metadata": {"name": LEASE},
            "spec": {"holderIdentity": "node1"},
        },
    )
    core = client.CoreV1Api(agent_api)
    leases = client.CoordinationV1Api(agent_api)
    custom = client.CustomObjectsApi(agent_api)
    lease = {"metadata": {"name": LEASE}, "spec": {"holderIdentity": "node1"}}
    refused = {
        "create lease elsewhere": _status(leases.create_namespaced_lease, "default", lease),
        "list leases everywhere": _status(leases.list_lease_for_all_namespaces),
        "patch lease": _status(
            leases.patch_namespaced_lease,
            LEASE,
            kube.namespace,
            {"spec": {"holderIdentity": "node2"}},
        ),
        "patch policy spec": _status(
            custom.patch_cluster_custom_object, *POLICY, name, {"spec": {"externalIPs": True}}
        ),
        "delete policy": _status(custom.delete_cluster_custom_object, *POLICY, name),
        "update service": _status(
            core.replace_namespaced_service,
            "red",
            kube.namespace,
            kube.core.read_namespaced_service("red", kube.namespace),
        ),
        "delete service": _status(core.delete_namespaced_service, "red", kube.namespace),
        "annotate service": _status(
            core.patch_namespaced_service,
            "red",
            kube.namespace,
            {"metadata": {"annotations": {"l2announcer.io/announcing-node": "node1"}}},
        ),
        "list pods": _status(core.list_pod_for_all_namespaces),
        "read an endpointslice": _status(
            client.DiscoveryV1Api(agent_api).read_namespaced_endpoint_slice,
            "red-1",
            kube.namespace,
        ),
        "patch node": _status(core.patch_node, "node1", {"metadata": {"labels": {"a": "b"}}}),
        "list secrets": _status(core.list_secret_for_all_namespaces),
        "list configmaps": _status(core.list_config_map_for_all_namespaces),
        "mint a token": _status(
            core.create_namespaced_service_account_token, SA, kube.namespace, {"spec": {}}
        ),
    }
    assert refused == dict.fromkeys(refused, 403)


def test_without_the_lease_role_the_agent_gets_the_seeds_403(agent: Agent, agent_api: Any) -> None:
    kube = agent.kube
    leases = KubernetesLeaseAPI(agent_api, kube.namespace)
    assert leases.get(LEASE, timeout=10) is None  # allowed: 404 means "no lease yet"

    # The Role without its leases rule: what an incomplete install or a hand edit leaves.
    role = copy.deepcopy(agent.of_kind("Role"))
    role["rules"] = [r for r in role["rules"] if "leases" not in r["resources"]]
    assert [r["resources"] for r in role["rules"]] == [["daemonsets"]]
    apply(kube, [role])

    denied: list[Forbidden] = []

    def forbidden() -> bool:
        try:
            leases.get(LEASE, timeout=10)
        except Forbidden as e:
            denied.append(e)
            return True
        return False

    until(forbidden, 10.0, "a 403 for the lease")
    # The seed's log line (kube-system/cilium there, this test's namespace and ServiceAccount
    # here), word for word from the real server.
    assert str(denied[-1]) == (
        f'leases.coordination.k8s.io "{LEASE}" is forbidden: '
        f'User "system:serviceaccount:{kube.namespace}:{SA}" cannot get resource "leases" '
        f'in API group "coordination.k8s.io" in the namespace "{kube.namespace}"'
    )
    # The lease GC's list is refused too, which it takes as "feature never on".
    assert leases.collect_garbage() == 0

    # Restoring the shipped Role heals it, with the same token and client.
    apply(kube, [agent.of_kind("Role")])
    until(lambda: not forbidden(), 10.0, "the lease readable again")
    assert leases.get(LEASE, timeout=10) is None


def test_the_403_body_is_a_status_the_agent_can_read(agent: Agent) -> None:
    """The raw answer behind that message: a v1 Status, reason Forbidden, with details."""
    kube = agent.kube
    api = make_api_client(str(agent.kubeconfig), qps=50, burst=100)
    try:
        with pytest.raises(client.ApiException) as e:
            client.CoordinationV1Api(api).read_namespaced_lease(LEASE, "default")
    finally:
        api.close()
    assert e.value.status == 403
    body = json.loads(str(e.value.body))
    assert {k: body[k] for k in ("kind", "status", "reason", "code")} == {
        "kind": "Status",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
    }
    assert body["details"] == {"name": LEASE, "group": "coordination.k8s.io", "kind": "leases"}
    assert kube.user(SA) in body["message"]
