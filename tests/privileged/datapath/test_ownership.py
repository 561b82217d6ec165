"""The datapath touches only what it created: pins are adopted or removed only when their BTF
proves our program made them; a tc filter is ours only by priority, handle AND name; an interface
where someone else's program sees ARP is refused, with one line naming it, and the others work.

Every test uses a BPF root of its own under /sys/fs/bpf (never the real tc/globals) and network
namespaces of its own; both are removed after the test, whatever its outcome.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.config import Config
from agent.runtime import StartError
from bpf import syscall
from bpf.attach import FILTER_HANDLE, FILTER_NAME
from bpf.datapath import Datapath, remove_leftovers
from bpf.maps import (
    IFACES_MAP_NAME,
    LIVENESS_MAP_NAME,
    PINNED_MAPS,
    RESPONDER_MAP_NAME,
    RESPONDER_V6_MAP_NAME,
    PinConflictError,
    check_pins,
    encode_key,
)
from tests.privileged.datapath import foreign
from tests.privileged.datapath.lab import REPO, VIP, Lab, Loader, arping, in_netns, sh

StartLoader = Callable[..., Loader]


def _responder_pin(bpf_root: str) -> str:
    return f"{bpf_root}/{RESPONDER_MAP_NAME}"


def _btf_id(path: str) -> int:
    fd = syscall.obj_get(path)
    try:
        return syscall.map_info(fd).btf_id
    finally:
        os.close(fd)


def _filters(lab: Lab, dev: str = "n0") -> str:
    return sh("ip", "netns", "exec", lab.node, "tc", "filter", "show", "dev", dev, "ingress")


def _put_key(path: str) -> None:
    fd = syscall.obj_get(path)
    try:
        syscall.update(fd, encode_key(VIP, 7), (41).to_bytes(8, "little"))
    finally:
        os.close(fd)


def _get_key(path: str) -> bytes | None:
    fd = syscall.obj_get(path)
    try:
        return syscall.lookup(fd, encode_key(VIP, 7), 8)
    finally:
        os.close(fd)


# -- pins ----------------------------------------------------------------------------------------


def _refusal(path: str, map_id: int, btf: str) -> str:
    """The one line that refuses a foreign Cilium-like responder map alone in the bpf root."""
    return (
        f"BPF pin {path} is not l2announcer's: hash map 'cilium_l2_respo' (id {map_id}, key 8 B, "
        f"value 8 B, 4096 entries, flags 0x1, {btf}), not created with the l2announcer maps "
        "beside it (there are none); left untouched. Set bpf-root to a directory of "
        "l2announcer's own, e.g. /sys/fs/bpf/l2announcer"
    )


@pytest.mark.parametrize("kind", ["cilium-like BTF", "no BTF"])
def test_a_foreign_map_at_our_path_is_refused_and_left_untouched(bpf_root: str, kind: str) -> None:
    path = _responder_pin(bpf_root)
    before = (
        foreign.cilium_like_map(path)
        if kind == "cilium-like BTF"
        else foreign.map_without_btf(path)
    )
    _put_key(path)
    with pytest.raises(PinConflictError) as refused:
        Datapath(bpf_root).start()
    btf = f"BTF id {_btf_id(path)}" if kind == "cilium-like BTF" else "no BTF"
    assert str(refused.value) == _refusal(path, before, btf)
    # Nothing was compiled, pinned or written: the foreign map is the only pin, as it was.
    assert os.listdir(bpf_root) == [RESPONDER_MAP_NAME]
    assert foreign.map_id(path) == before
    assert _get_key(path) == (41).to_bytes(8, "little")


def test_the_loader_refuses_with_one_line_and_no_traceback(bpf_root: str) -> None:
    path = _responder_pin(bpf_root)
    foreign.cilium_like_map(path)
    out = subprocess.run(
        [sys.executable, "-m", "bpf.loader", "--bpf-root", bpf_root],
        cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"error: BPF pin {path} is not l2announcer's: ")


def test_with_the_feature_off_a_foreign_pin_is_left_alone(
    bpf_root: str, make_netns: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    path = _responder_pin(bpf_root)
    before = foreign.cilium_like_map(path)
    _put_key(path)
    with caplog.at_level(logging.INFO, logger="bpf.datapath"), in_netns(make_netns()):
        removed = remove_leftovers(bpf_root)
    assert removed == []
    assert os.listdir(bpf_root) == [RESPONDER_MAP_NAME]
    assert foreign.map_id(path) == before
    assert _get_key(path) == (41).to_bytes(8, "little")
    assert [r.getMessage() for r in caplog.records] == [
        f"leaving BPF pin {path} alone: it is not l2announcer's (hash map 'cilium_l2_respo' "
        f"(id {before}, key 8 B, value 8 B, 4096 entries, flags 0x1, BTF id {_btf_id(path)}), "
        "not created with the l2announcer maps beside it (there are none))"
    ]


def test_a_foreign_responder_map_beside_our_own_maps_is_told_apart_from_them(
    lab: Lab, bpf_root: str, loaders: StartLoader, caplog: pytest.LogCaptureFixture
) -> None:
    # Ours first; then someone else's responder map where ours was (as if Cilium re-created it).
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.stop("exit")
    ours = _btf_id(f"{bpf_root}/{IFACES_MAP_NAME}")
    path = _responder_pin(bpf_root)
    os.unlink(path)
    theirs = foreign.cilium_like_map(path)
    with pytest.raises(PinConflictError) as refused:
        Datapath(bpf_root).start()
    assert (
        f"not created with the l2announcer maps beside it (l2announcer_ifaces BTF id {ours}, "
        f"l2announcer_liveness BTF id {ours}, l2announcer_responder_v6 BTF id {ours}); left "
        "untouched" in str(refused.value)
    )
    # With the feature off: ours go, theirs stays.
    with caplog.at_level(logging.INFO, logger="bpf.datapath"), in_netns(lab.node):
        removed = remove_leftovers(bpf_root)
    assert removed == [
        "tc filter on n0",
        f"{bpf_root}/{LIVENESS_MAP_NAME}",
        f"{bpf_root}/{IFACES_MAP_NAME}",
        f"{bpf_root}/{RESPONDER_V6_MAP_NAME}",
    ]
    assert os.listdir(bpf_root) == [RESPONDER_MAP_NAME]
    assert foreign.map_id(path) == theirs
    assert [r.levelname for r in caplog.records] == ["WARNING"]


# The DaemonSet's capabilities, and no others: no CAP_SYS_ADMIN, so no lookup of BTF by id.
POD_CAPS = "-all,+net_admin,+net_raw,+bpf"
AS_THE_POD = (
    "setpriv", f"--inh-caps={POD_CAPS}", f"--ambient-caps={POD_CAPS}",
    f"--bounding-set={POD_CAPS}",
)  # fmt: skip

_CHECK = """
import json, sys
from bpf.maps import check_pins
print(json.dumps({n: [c.ours, c.adoptable] for n, c in check_pins(sys.argv[1]).items()}))
"""
_REMOVE = """
import json, sys
from bpf.datapath import remove_leftovers
print(json.dumps(remove_leftovers(sys.argv[1])))
"""


def _as_the_pod(ns: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    # nsenter needs CAP_SYS_ADMIN: the capabilities are dropped after it, before python.
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", *AS_THE_POD, sys.executable, "-c", script, *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_ownership_is_told_with_only_the_pods_capabilities(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.stop("exit")
    other_root = f"{bpf_root}/other"
    foreign.cilium_like_map(_responder_pin(other_root))

    ours = _as_the_pod(lab.node, _CHECK, bpf_root)
    assert json.loads(ours.stdout) == {name: [True, True] for name, _kind in PINNED_MAPS}, ours
    theirs = _as_the_pod(lab.node, _CHECK, other_root)
    assert json.loads(theirs.stdout) == {
        RESPONDER_MAP_NAME: [False, False],
        LIVENESS_MAP_NAME: [False, False],  # absent
        IFACES_MAP_NAME: [False, False],
        RESPONDER_V6_MAP_NAME: [False, False],
    }, theirs

    removed = _as_the_pod(lab.node, _REMOVE, bpf_root)
    assert json.loads(removed.stdout) == [
        "tc filter on n0",
        *(f"{bpf_root}/{name}" for name, _kind in PINNED_MAPS),
    ], removed
    left = _as_the_pod(lab.node, _REMOVE, other_root)
    assert json.loads(left.stdout) == [], left
    assert os.listdir(other_root) == [RESPONDER_MAP_NAME]


def test_our_own_pins_are_adopted_and_with_the_feature_off_removed(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.cmd(f"add {VIP} {lab.node_ifindex}")
    first.stop("exit")  # program, filter and pins stay
    checks = check_pins(bpf_root)
    assert sorted(checks) == sorted(name for name, _kind in PINNED_MAPS)
    assert all(c.adoptable for c in checks.values()), checks
    ids = {name: foreign.map_id(c.path) for name, c in checks.items()}

    dp = Datapath(bpf_root)  # adopts: same maps, same content
    dp.start()
    try:
        assert dp.responder.v4.info.id == ids[RESPONDER_MAP_NAME]
        assert dp.responder.v6.info.id == ids[RESPONDER_V6_MAP_NAME]
        assert dp.responder.get(VIP, lab.node_ifindex) == 0
    finally:
        dp.shutdown(detach=False)
    assert {n: foreign.map_id(f"{bpf_root}/{n}") for n in ids} == ids

    with in_netns(lab.node):
        removed = remove_leftovers(bpf_root)
    assert removed == [
        "tc filter on n0",
        f"{bpf_root}/{RESPONDER_MAP_NAME}",
        f"{bpf_root}/{LIVENESS_MAP_NAME}",
        f"{bpf_root}/{IFACES_MAP_NAME}",
        f"{bpf_root}/{RESPONDER_V6_MAP_NAME}",
    ]
    assert os.listdir(bpf_root) == []
    assert FILTER_NAME not in _filters(lab)
    assert arping(lab.client, VIP, 2).received == 0


# -- programs on the interface ---------------------------------------------------------------


def test_a_foreign_tc_program_refuses_that_interface_with_one_line_and_others_work(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    other = foreign.tc_filter(lab.node, "n0", name="cil_from_netdev-n0")
    loader = loaders(lab.node, bpf_root)
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    expected = (
        "not answering ARP or NDP on n0: another BPF program on its ingress sees ARP or IPv6 "
        f"(cil_from_netdev-n0 (program id {other}, tc filter pref 1 protocol all)), and two "
        "responders would both answer; remove it from n0 or leave n0 out of the policies' "
        "interfaces"
    )
    for _ in range(2):  # the reconciler retries: refused each time, logged once
        with pytest.raises(RuntimeError) as refused:
            loader.cmd("attach n0")
        assert str(refused.value) == f"attach n0: err {expected}"
    assert FILTER_NAME not in _filters(lab)
    assert "cil_from_netdev-n0" in _filters(lab)  # theirs, untouched
    assert loader.cmd("detach n0") is False
    assert arping(lab.client, VIP, 2).received == 0  # we do not answer there

    loader.cmd("attach d0")  # another interface of the node keeps working
    assert FILTER_NAME in _filters(lab, "d0")
    loader.stop("exit")
    assert loader.proc.stderr is not None
    warnings = [line for line in loader.proc.stderr.read().splitlines() if line]
    assert warnings == [expected]


def test_a_foreign_filter_at_our_priority_and_handle_is_not_ours(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    # Same priority, handle and protocol as ours; only the name differs.
    other = foreign.tc_filter(
        lab.node, "n0", name="someone_else", prio=1, handle=FILTER_HANDLE, protocol=0x0806
    )
    loader = loaders(lab.node, bpf_root)
    assert loader.ready["attached"] == []  # not adopted as a previous agent's
    with pytest.raises(
        RuntimeError, match=rf"someone_else \(program id {other}, tc filter pref 1 protocol arp\)"
    ):
        loader.cmd("attach n0")  # not replaced
    assert loader.cmd("detach n0") is False  # not detached
    loader.stop("disable")
    assert "someone_else" in _filters(lab)


def test_a_foreign_program_appearing_under_our_adopted_filter_takes_ours_off(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.cmd(f"add {VIP} {lab.node_ifindex}")
    assert arping(lab.client, VIP, 1).received == 1
    first.stop("exit")
    foreign.tc_filter(lab.node, "n0", name="cil_from_netdev-n0", prio=3, handle=1)
    second = loaders(lab.node, bpf_root)
    assert second.ready["attached"] == [lab.node_ifindex]  # ours, from the first
    with pytest.raises(RuntimeError, match="not answering ARP or NDP on n0"):
        second.cmd("attach n0")  # what the reconciler does first on each interface
    assert FILTER_NAME not in _filters(lab)
    assert "cil_from_netdev-n0" in _filters(lab)
    assert arping(lab.client, VIP, 2).received == 0


def test_a_tcx_program_is_refused_too(lab: Lab, bpf_root: str, loaders: StartLoader) -> None:
    other = foreign.tcx_program(lab.node, "n0")
    loader = loaders(lab.node, bpf_root)
    with pytest.raises(RuntimeError) as refused:
        loader.cmd("attach n0")
    assert f"(cil_from_netdev (program id {other}, tcx))" in str(refused.value)
    assert FILTER_NAME not in _filters(lab)


def test_the_agent_refuses_to_start_with_one_line_naming_the_pin(
    bpf_root: str, make_netns: Callable[[], str], tmp_path: Path
) -> None:
    import kubernetes

    path = _responder_pin(bpf_root)
    before = foreign.cilium_like_map(path)
    config = Config(
        state_dir=str(tmp_path),
        node_name="node1",
        enable_l2_announcements=True,
        bpf_root=bpf_root,
        devices=("lo",),
    )
    # No API server: the modules started before the datapath fail their requests quickly.
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="https://127.0.0.1:9"))
    with in_netns(make_netns()):
        agent = Agent(config, {}, datapath=True, api_client=api)
        try:
            with pytest.raises(StartError) as refused:
                agent.start()
        finally:
            agent.stop()
    assert str(refused.value) == "starting datapath: " + _refusal(
        path, before, f"BTF id {_btf_id(path)}"
    )
    assert os.listdir(bpf_root) == [RESPONDER_MAP_NAME]
    assert foreign.map_id(path) == before
