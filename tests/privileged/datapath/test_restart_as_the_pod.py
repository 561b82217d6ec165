"""A restart over existing pins, with exactly the DaemonSet's capabilities.

The other datapath tests run as root, which hides any step that needs more than the pod is
granted. Here both loads run with the capabilities deploy/daemonset.yaml adds and nothing else
(no CAP_SYS_ADMIN): the second start must adopt the first one's pinned maps, counters and all,
and keep answering ARP; an agent that cannot would crash-loop on every node that has its pins.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import yaml

from bpf.maps import PINNED_MAPS, RESPONDER_MAP_NAME
from tests.privileged.datapath import foreign
from tests.privileged.datapath.lab import REPO, VIP, Lab, Loader, arping

StartLoader = Callable[..., Loader]


def _pod_capabilities() -> list[str]:
    """The capabilities the DaemonSet's container adds (it drops all others)."""
    for doc in yaml.safe_load_all((REPO / "deploy/daemonset.yaml").read_text()):
        if doc and doc.get("kind") == "DaemonSet":
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            caps = container["securityContext"]["capabilities"]
            assert caps["drop"] == ["ALL"]
            return [str(c).lower() for c in caps["add"]]
    raise AssertionError("no DaemonSet in deploy/daemonset.yaml")


def _as_the_pod() -> tuple[str, ...]:
    caps = "-all," + ",".join(f"+{c}" for c in _pod_capabilities())
    return (
        "setpriv", f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}",
    )  # fmt: skip


def _map_ids(bpf_root: str) -> dict[str, int]:
    return {name: foreign.map_id(f"{bpf_root}/{name}") for name, _kind in PINNED_MAPS}


def test_a_restart_over_its_own_pins_adopts_them_with_only_the_pods_capabilities(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    pod = _as_the_pod()
    assert "sys_admin" not in pod[1]
    first = loaders(lab.node, bpf_root, "--attach", "n0", inner=pod)
    assert first.cmd(f"add {VIP} {lab.node_ifindex}") is True
    assert arping(lab.client, VIP, 3).received == 3
    assert first.cmd(f"get {VIP} {lab.node_ifindex}") == 3
    first.stop("exit")  # program, filter, pins and last stamp stay, as for a pod restart
    ids = _map_ids(bpf_root)

    second = loaders(lab.node, bpf_root, "--attach", "n0", inner=pod)
    assert second.ready["stamp_age_ns"] is not None  # it read the first one's stamp
    assert second.ready["attached"] == [lab.node_ifindex]
    assert _map_ids(bpf_root) == ids  # the same maps, not new ones
    assert second.cmd(f"get {VIP} {lab.node_ifindex}") == 3  # key and counter kept
    assert second.cmd(f"add {VIP} {lab.node_ifindex}") is False
    assert arping(lab.client, VIP, 2).received == 2  # answered by the new program
    assert second.cmd(f"get {VIP} {lab.node_ifindex}") == 5

    second.stop("disable")  # and the feature-off path, also as the pod: nothing left
    assert second.proc.returncode == 0
    assert os.listdir(bpf_root) == []
    assert arping(lab.client, VIP, 2).received == 0
    assert RESPONDER_MAP_NAME not in os.listdir(bpf_root)
