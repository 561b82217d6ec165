"""Uninstall in the lab, as a cluster does it: the agents run with their DaemonSet named
(DAEMONSET_NAME, as the manifests set it) and the DaemonSet exists in the lab's apiserver; the
uninstall deletes it, stops every agent with SIGTERM (what the kubelet does when the DaemonSet's
pods go, then deletes them and with them their memory volume, the state directory) and runs the
chart hook's lease clean-up. Afterwards no node has a tc filter, a pin, a state file or a state
directory of l2announcer's, no cilium-l2announce-* Lease is left, and no Service carries
anything of ours. A plain restart (the DaemonSet still there) keeps the datapath, as before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.leases import heartbeat_name, lease_name
from lab import lab
from lab.inventory import LabState
from tests.e2e import test_lab
from tests.e2e.lab_extras import holder_of, until
from tests.e2e.test_lab import up

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(180)

L2AGENT = str(Path(sys.executable).parent / "l2agent")
NAMESPACE = "kube-system"  # the agents' k8s-namespace in the lab (the default)
DAEMONSET = {  # only the object matters: no node runs it (the lab has no kubelet anyway)
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "l2announcer", "namespace": NAMESPACE},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "l2announcer"}},
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "l2announcer"}},
            "spec": {
                "nodeSelector": {"l2lab/none": "true"},
                "containers": [{"name": "l2announcer", "image": "localhost/l2announcer:dev"}],
            },
        },
    },
}


def leftovers(state: LabState, node: str) -> dict[str, str]:
    """What of l2announcer's a node holds: its tc filters on eth0, its pins (every file on the
    node's own bpffs), its state files, its state directory (the pod's volume, mounted in the
    node's sandbox, kept in the lab's directory)."""

    def run(*command: str) -> str:
        return lab.run_in(state, node, list(command)).strip()

    return {
        "tc filter": run("tc", "filter", "show", "dev", "eth0", "ingress"),
        # The bpffs's own iterators (maps.debug, progs.debug) are not pins of anyone's.
        "pins": run(
            "find", "/sys/fs/bpf", "-mindepth", "1", "!", "-type", "d", "!", "-name", "*.debug"
        ),
        "state files": run("find", "/run/l2announcer", "-mindepth", "1"),
        "state directory": " ".join(
            [
                *(["mounted at /run/l2announcer"] if run("sh", "-c", MOUNTED) else []),
                *([str(d)] if (d := state.node_state_dir(node)).exists() else []),
            ]
        ),
    }


MOUNTED = "! mountpoint -q /run/l2announcer || echo mounted"


def our_service_annotations(state: LabState) -> list[str]:
    services = json.loads(lab.kubectl(state, "get", "services", "-A", "-o", "json"))["items"]
    return [
        f"{s['metadata']['name']}: {key}"
        for s in services
        for key in (s["metadata"].get("annotations") or {})
        if "l2announcer" in key
    ]


def stop_all(state: LabState) -> None:
    """The kubelet's part of the DaemonSet's deletion: stop each pod's container, delete the pod."""
    for node in state.node_states:
        assert lab.signal_agent(state, node, signal.SIGTERM, wait=15.0), f"{node} did not stop"
        lab.delete_pod(state, node)


def test_uninstall_leaves_no_filter_pin_state_file_lease_or_annotation(
    lab_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The lab's agents inherit this environment, as a pod's container gets the manifest's env.
    monkeypatch.setenv("DAEMONSET_NAME", "l2announcer")
    state = up(lab_name, nodes=2, services=2)
    manifest = tmp_path / "daemonset.yaml"
    manifest.write_text(yaml.safe_dump(DAEMONSET))
    lab.kubectl(state, "apply", "-f", str(manifest))

    # A restart while the DaemonSet is there keeps the pins (maps and counters) for the next
    # agent. (The filter goes with the handover either way: it is detached from an interface
    # once no VIP is announced there.)
    holder = holder_of(state, "service-1")
    lab.signal_agent(state, holder, signal.SIGTERM, wait=15.0)
    kept = leftovers(state, holder)
    assert "cilium_l2_responder_v4" in kept["pins"] and kept["state files"], kept
    assert kept["state directory"], kept  # a restarted container keeps its pod's volume
    lab.start_agent(state, holder, say=lambda _: None)
    started = f"l2announcer agent started on node {holder}"
    until(lambda: state.agent_log(holder).read_text().count(started) == 2, "restarted", 60.0)
    lab.wait_announced(state, 30.0)
    assert len(lab.leases(state)) == 2
    before = {node: leftovers(state, node) for node in state.node_states}
    assert all(b["pins"] and b["state files"] for b in before.values()), before
    with_filter = [node for node, b in before.items() if "l2announcer" in b["tc filter"]]
    assert with_filter, before

    # Uninstall: the DaemonSet goes, the kubelet stops its pods, the hook cleans the leases.
    lab.kubectl(state, "delete", "daemonset", "l2announcer", "-n", NAMESPACE, "--wait")
    stop_all(state)
    hook = subprocess.run(
        [
            L2AGENT,
            "cleanup",
            "--leases",
            "--wait=20s",
            f"--kubeconfig={state.admin_kubeconfig}",
            f"--k8s-namespace={NAMESPACE}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (hook.returncode, hook.stderr) == (0, ""), hook
    removed = hook.stdout.splitlines()
    # the two Services' leases, and each node's heartbeat (placement is on by default)
    expected = [lease_name("default", s) for s in ("service-1", "service-2")]
    expected += [heartbeat_name(node) for node in state.node_states]
    assert sorted(removed) == sorted(f"removed lease kube-system/{name}" for name in expected)

    for node in state.node_states:
        log = state.agent_log(node).read_text()
        last_stop = log[log.rfind("received SIGTERM") :]
        nothing = {"tc filter": "", "pins": "", "state files": "", "state directory": ""}
        assert leftovers(state, node) == nothing, f"{node}:\n{last_stop}"
        assert "uninstalling, removing this node's datapath and state files" in log
        assert "uninstall: removed BPF pin /sys/fs/bpf/tc/globals/cilium_l2_responder_v4" in log
    assert lab.leases(state) == {}
    assert our_service_annotations(state) == []

    # Nothing left for `l2agent cleanup` on a node either: run as the docs say, in the node's
    # network namespace with its bpffs, from a pod of its own (its own, empty state directory;
    # the lab node's /run/l2announcer is now the lab's bare mount point).
    for node in state.node_states:
        own = tmp_path / f"cleanup-{node}"
        out = lab.run_in(state, node, [L2AGENT, "cleanup", f"--state-dir={own}"])
        assert out.strip() == "nothing to remove", (node, out)
