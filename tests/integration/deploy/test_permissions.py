"""Least privilege, proven on the real kube-apiserver: the agent's ServiceAccount, bound to the
shipped RBAC (deploy/, and the chart rendered with each combination of its features), is asked
`kubectl auth can-i --as=system:serviceaccount:<ns>:l2announcer <verb> <resource> [-A|-n <ns>]`
for everything the agent does (yes) and for a list of things it must not do (no).

The two lists, NEEDED and MUST_NOT below, are the whole statement; docs/deploy.md gives the
reason for each rule. The agent cannot write Services at all: who announces a Service is the
holder of its Lease and the ``Announcing`` events on it (agent/service_status.py).
"""

from __future__ import annotations

import functools
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.deploy.chart import render
from tests.integration.deploy.rbac import SA, Agent, bind, moved, shipped_rbac
from tests.kube import Kube, until
from tests.unit.deploy.manifests import NAMESPACE, REPO

ALL = "-A"  # every namespace (and cluster-scoped resources)
OWN = "own"  # the agent's own namespace (kube-system when deployed)
POLICIES = "ciliuml2announcementpolicies.cilium.io"
LEASES = "leases.coordination.k8s.io"
ENDPOINT_SLICES = "endpointslices.discovery.k8s.io"

Check = tuple[str, str, str]  # (verb, resource[/subresource], ALL | OWN | a namespace)

# -- what the agent needs: every answer yes ----------------------------------------------------

ANNOUNCING = [
    *((v, "services", ALL) for v in ("get", "list", "watch")),  # what to announce
    *((v, "nodes", ALL) for v in ("get", "list", "watch")),  # its node's labels (nodeSelector)
    *((v, POLICIES, ALL) for v in ("get", "list", "watch")),  # the policies
    ("patch", f"{POLICIES}/status", ALL),  # the io.cilium/bad-* conditions
    ("create", "events", ALL),  # the Announcing event, in the Service's namespace
    ("patch", "services/status", ALL),  # the l2announcer.io/Announced and Conflict conditions
    # where each Service's endpoints are (externalTrafficPolicy Local)
    *((v, ENDPOINT_SLICES, ALL) for v in ("list", "watch")),
]
ELECTION = [  # one Lease per Service, in its own namespace only
    (v, LEASES, OWN) for v in ("create", "get", "update", "list", "delete", "watch")
]
# Its own DaemonSet (by name), read on SIGTERM: gone or being deleted means uninstall.
OWN_DAEMONSET = [("get", "daemonsets.apps=l2announcer", OWN)]
POD_READS = [(v, "pods", ALL) for v in ("get", "list", "watch")]  # only with pod announcements
NEEDED = ANNOUNCING + ELECTION + OWN_DAEMONSET

# -- what it must not be able to do: every answer no -------------------------------------------

MUST_NOT = [
    # Services: only their status conditions are written (services/status), never the object.
    ("patch", "services", ALL),
    ("patch", "services", "default"),
    ("update", "services", ALL),
    ("create", "services", ALL),
    ("delete", "services", ALL),
    ("update", "services/status", ALL),
    # EndpointSlices are listed and watched, never read one by one or written.
    ("get", ENDPOINT_SLICES, ALL),
    *((v, ENDPOINT_SLICES, ALL) for v in ("create", "update", "patch", "delete")),
    # Pods: read only with pod announcements (POD_READS), never written.
    ("create", "pods", ALL),
    ("delete", "pods", ALL),
    ("create", "pods/exec", ALL),
    ("patch", "pods/status", ALL),
    # Nodes are read only.
    *((v, "nodes", ALL) for v in ("patch", "update", "delete")),
    ("patch", "nodes/status", ALL),
    # Events are created, never changed or removed.
    *((v, "events", ALL) for v in ("update", "patch", "delete")),
    # Policies: the spec is the operator's; the status only by patch.
    *((v, POLICIES, ALL) for v in ("create", "update", "patch", "delete")),
    ("update", f"{POLICIES}/status", ALL),
    # Leases nowhere but its own namespace, and there never patched (the elector PUTs).
    *(
        (v, LEASES, ns)
        for v in ("get", "create", "update", "delete")
        for ns in ("default", NAMESPACE)
    ),
    ("list", LEASES, ALL),
    ("patch", LEASES, OWN),
    # DaemonSets: only its own, only read.
    ("get", "daemonsets.apps", OWN),
    ("list", "daemonsets.apps", ALL),
    ("delete", "daemonsets.apps=l2announcer", OWN),
    ("update", "daemonsets.apps=l2announcer", OWN),
    # No secrets, configuration of others, tokens, RBAC or impersonation.
    ("get", "secrets", OWN),
    ("list", "secrets", ALL),
    ("list", "configmaps", ALL),
    ("create", "serviceaccounts/token", OWN),
    ("impersonate", "serviceaccounts", ALL),
    ("create", "rolebindings.rbac.authorization.k8s.io", OWN),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ALL),
    ("escalate", "roles.rbac.authorization.k8s.io", OWN),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ALL),
    ("*", "*", ALL),
]

ASKED = NEEDED + POD_READS + MUST_NOT


def can_i(agent: Agent, check: Check) -> bool:
    verb, resource, where = check
    resource, _, sub = resource.partition("/")
    resource = resource.replace("=", "/")  # a named object: kubectl auth can-i <resource>/<name>
    namespace = {ALL: None, OWN: agent.kube.namespace}.get(where, where)
    return agent.can_i(verb, resource, namespace, sub or None)


def granted(agent: Agent) -> list[Check]:
    """The checks of ASKED the server answers yes to, in ASKED's order."""
    with ThreadPoolExecutor(4) as pool:  # one kubectl each
        answers = list(pool.map(functools.partial(can_i, agent), ASKED))
    return [check for check, yes in zip(ASKED, answers, strict=True) if yes]


def test_the_lists_do_not_overlap() -> None:
    assert len(set(ASKED)) == len(ASKED)


def test_the_shipped_manifests_grant_what_the_agent_needs_and_nothing_on_the_list(
    kube: Kube,
) -> None:
    agent = bind(kube, shipped_rbac(kube))
    assert granted(agent) == NEEDED


# Chart values -> what the agent may then do: each feature brings its rules, and only its own.
CHART_CASES = {
    "default": ((), NEEDED),
    "pod announcements on": (("l2podAnnouncements.enabled=true",), NEEDED + POD_READS),
    "only pod announcements": (
        ("l2announcements.enabled=false", "l2podAnnouncements.enabled=true"),
        ELECTION + OWN_DAEMONSET + POD_READS,
    ),
    # The lease GC still runs once at start, to remove what an earlier agent left.
    "both off": (("l2announcements.enabled=false",), ELECTION + OWN_DAEMONSET),
}


@pytest.mark.parametrize("case", list(CHART_CASES))
def test_the_chart_grants_each_features_rules_only_when_it_is_enabled(
    kube: Kube, tmp_path: Path, case: str
) -> None:
    sets, expected = CHART_CASES[case]
    agent = bind(kube, moved(kube, render(tmp_path, sets=sets)))
    assert granted(agent) == [c for c in ASKED if c in expected]


def documented_pod_grant() -> list[str]:
    """The kubectl commands docs/deploy.md gives for pod announcements with deploy/."""
    text = (REPO / "docs" / "deploy.md").read_text()
    commands = re.findall(
        r"^kubectl create clusterrole(?:binding)? l2announcer-pods .*$", text, re.M
    )
    assert len(commands) == 2, commands
    return commands


def test_the_documented_commands_grant_pod_reads_beside_the_plain_manifests(kube: Kube) -> None:
    agent = bind(kube, shipped_rbac(kube))
    name = kube.name("l2announcer-pods")
    kube.on_cleanup(functools.partial(kube.rbac.delete_cluster_role, name))
    kube.on_cleanup(functools.partial(kube.rbac.delete_cluster_role_binding, name))
    for command in documented_pod_grant():
        args = command.replace("l2announcer-pods", name)
        args = args.replace(f"{NAMESPACE}:{SA}", f"{kube.namespace}:{SA}")
        kube.kubectl(*args.split()[1:], check=True)
    until(lambda: agent.can_i("watch", "pods"), 10.0, "the pods rule in force")
    assert granted(agent) == NEEDED + POD_READS
