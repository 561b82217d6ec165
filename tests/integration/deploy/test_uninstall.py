"""Uninstall against the real kube-apiserver: the agent's question on SIGTERM ("is my DaemonSet
gone or being deleted?") asked with the shipped RBAC, and the chart's pre-delete hook command
(`l2agent cleanup --daemonset=l2announcer --leases`) run as the hook's own ServiceAccount with the
hook's rendered RBAC: it deletes the DaemonSet and the unused leases, and nothing else."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.k8s.client import make_api_client
from agent.k8s.uninstall import DaemonSetState, daemonset_state
from agent.leases.record import micro_time
from lab.controlplane import write_kubeconfig
from tests.integration.deploy.chart import render
from tests.integration.deploy.rbac import Agent, apply, bind, moved, shipped_rbac
from tests.kube import Kube, until
from tests.unit.deploy.manifests import NAMESPACE

L2AGENT = str(Path(sys.executable).parent / "l2agent")
DAEMONSET = "l2announcer"
HOOK_SA = "l2announcer-uninstall"


def daemonset(name: str, finalizers: list[str] | None = None) -> dict[str, Any]:
    """A DaemonSet no node runs (its nodeSelector matches none): only the object matters."""
    labels = {"app.kubernetes.io/name": name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"l2announcer.test/none": "true"},
                    "containers": [{"name": "c", "image": "localhost/none:0"}],
                },
            },
        },
    }


def apps(kube: Kube) -> Any:  # dict bodies: the typed models are no help here
    return client.AppsV1Api(kube.api)


@pytest.fixture
def agent(kube: Kube) -> Agent:
    return bind(kube, shipped_rbac(kube))


def test_the_agent_tells_an_uninstall_from_a_restart_by_its_daemonset(
    kube: Kube, agent: Agent
) -> None:
    api = make_api_client(str(agent.kubeconfig), qps=50, burst=100)
    ns = kube.namespace
    try:
        apps(kube).create_namespaced_daemon_set(ns, daemonset(DAEMONSET, ["l2announcer.test/hold"]))
        assert daemonset_state(api, ns, DAEMONSET, 5)[0] is DaemonSetState.PRESENT
        # Not its own DaemonSet: the rule names one, so the answer is "cannot tell" (a restart).
        state, how = daemonset_state(api, ns, "other", 5)
        assert state is DaemonSetState.UNKNOWN and "403" in how

        apps(kube).delete_namespaced_daemon_set(DAEMONSET, ns)  # held by the finalizer
        assert daemonset_state(api, ns, DAEMONSET, 5) == (
            DaemonSetState.DELETED,
            f"daemonset {ns}/{DAEMONSET} is being deleted",
        )
        apps(kube).patch_namespaced_daemon_set(DAEMONSET, ns, {"metadata": {"finalizers": None}})
        until(
            lambda: (
                daemonset_state(api, ns, DAEMONSET, 5)[0] is DaemonSetState.DELETED
                and "gone" in daemonset_state(api, ns, DAEMONSET, 5)[1]
            ),
            10.0,
            "the DaemonSet gone",
        )
    finally:
        api.close()


def hook_kubeconfig(kube: Kube, tmp_path: Path) -> Path:
    """The chart's hook ServiceAccount, Role and RoleBinding, applied in this test's namespace;
    a kubeconfig with a token the server minted for that ServiceAccount."""
    objects = [o for o in render(tmp_path, hooks=True) if o["kind"] != "Job"]
    apply(kube, moved(kube, objects, NAMESPACE))
    token = kube.cp.service_account_token(kube.namespace, HOOK_SA)
    path = write_kubeconfig(
        tmp_path / "hook.kubeconfig", kube.cp.url, kube.cp.pki.ca_cert, HOOK_SA, token=token
    )
    user = kube.user(HOOK_SA)
    until(
        lambda: (
            kube.kubectl(
                "auth", "can-i", "list", "leases", f"--as={user}", "-n", kube.namespace
            ).stdout.strip()
            == "yes"
        ),
        10.0,
        "the hook's RBAC in force",
    )
    return path


def let_the_garbage_collector_finish_daemonsets(kube: Kube) -> None:
    """The test control plane's kube-controller-manager runs its garbage collector as itself,
    without a cluster's per-controller credentials, and has no rule on DaemonSets: grant it, in
    this test's namespace, what the collector needs to finish a foreground deletion."""
    ns = kube.namespace
    rules = [{"apiGroups": ["apps"], "resources": ["daemonsets"],
              "verbs": ["get", "patch", "update", "delete"]}]  # fmt: skip
    kube.cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "gc", "namespace": ns}, "rules": rules})  # fmt: skip
    kube.cp.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "gc", "namespace": ns},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "gc"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                 "name": "system:kube-controller-manager"}]})  # fmt: skip


def lease(kube: Kube, name: str, holder: str, renewed: float) -> None:
    t = micro_time(renewed)
    spec = {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": t, "renewTime": t}
    meta = {"name": name, "namespace": kube.namespace}
    kube.cp.apply({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                   "spec": spec})  # fmt: skip


def lease_names(kube: Kube) -> list[str]:
    items = kube.coordination.list_namespaced_lease(kube.namespace).items
    return sorted(str(i.metadata.name) for i in items if i.metadata)


def cleanup(kubeconfig: Path, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [L2AGENT, "cleanup", f"--kubeconfig={kubeconfig}", f"--k8s-namespace={namespace}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_the_hook_deletes_the_daemonset_then_every_unused_lease_and_nothing_else(
    kube: Kube, tmp_path: Path
) -> None:
    ns = kube.namespace
    kubeconfig = hook_kubeconfig(kube, tmp_path)
    let_the_garbage_collector_finish_daemonsets(kube)
    apps(kube).create_namespaced_daemon_set(ns, daemonset(DAEMONSET))
    apps(kube).create_namespaced_daemon_set(ns, daemonset("someone-else"))
    now = time.time()
    lease(kube, "cilium-l2announce-default-released", "", now)
    lease(kube, "cilium-l2announce-default-expired", "node1", now - 60)  # its agent is gone
    lease(kube, "cilium-l2announce-default-held", "node2", now + 3600)  # renewed "now" for 1 h
    lease(kube, "kube-scheduler", "", now)  # not ours, even unheld

    done = cleanup(kubeconfig, ns, "--daemonset=l2announcer", "--leases", "--wait=10s")
    assert done.returncode == 1, done.stderr  # the held lease is left, and said so
    assert done.stderr == ""
    assert done.stdout.splitlines() == [
        f"deleting daemonset {ns}/{DAEMONSET}; waiting for its pods to stop",
        f"daemonset {ns}/{DAEMONSET} is gone",
        f"removed lease {ns}/cilium-l2announce-default-expired",
        f"removed lease {ns}/cilium-l2announce-default-released",
        f"left lease {ns}/cilium-l2announce-default-held: still held and renewed",
    ]
    assert [d.metadata.name for d in apps(kube).list_namespaced_daemon_set(ns).items] == [
        "someone-else"
    ]
    assert lease_names(kube) == ["cilium-l2announce-default-held", "kube-scheduler"]

    # Once its holder stops renewing, the next run takes it; a run after that has nothing to do.
    kube.coordination.delete_namespaced_lease("cilium-l2announce-default-held", ns)
    lease(kube, "cilium-l2announce-default-held", "node2", now - 60)
    done = cleanup(kubeconfig, ns, "--daemonset=l2announcer", "--leases", "--wait=5s")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        f"daemonset {ns}/{DAEMONSET} is gone",
        f"removed lease {ns}/cilium-l2announce-default-held",
    ]
    assert lease_names(kube) == ["kube-scheduler"]
    done = cleanup(kubeconfig, ns, "--leases")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_hook_may_not_touch_another_daemonset_or_write_leases(
    kube: Kube, tmp_path: Path
) -> None:
    hook_kubeconfig(kube, tmp_path)
    user = kube.user(HOOK_SA)

    def can_i(*args: str) -> str:
        done = kube.kubectl("auth", "can-i", *args, f"--as={user}", "-n", kube.namespace)
        return str(done.stdout).strip()

    assert can_i("delete", "daemonsets.apps/l2announcer") == "yes"
    assert can_i("delete", "daemonsets.apps/someone-else") == "no"
    assert can_i("list", "daemonsets.apps") == "no"
    assert can_i("create", "leases.coordination.k8s.io") == "no"
    assert can_i("update", "leases.coordination.k8s.io") == "no"
    assert can_i("get", "pods") == "no"
