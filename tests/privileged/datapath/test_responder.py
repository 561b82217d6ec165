"""The ARP responder in a real kernel: a node namespace runs the loader, a client namespace asks.

Positive cases use the real ``arping``; negative cases send crafted frames from a raw socket and
always include a positive control in the same setup, so "no answer" cannot come from a broken lab.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable

from bpf.arp_model import expected_reply
from bpf.attach import FILTER_NAME
from bpf.garp import ARPOP_REPLY, ARPOP_REQUEST, BROADCAST, arp_frame
from bpf.maps import IFACES_MAP_NAME, RESPONDER_MAP_NAME, IfaceMap, ResponderMap
from tests.privileged.datapath.lab import (
    CLIENT_IP,
    NODE_IP,
    OTHER_VIP,
    UNKNOWN_VIP,
    VIP,
    VIP2,
    Lab,
    Loader,
    Port,
    arping,
    sh,
)

StartLoader = Callable[..., Loader]


def _request(lab: Lab, vip: str, *, src: bytes | None = None, op: int = ARPOP_REQUEST) -> bytes:
    src = lab.client_mac if src is None else src
    return arp_frame(
        eth_dst=BROADCAST, eth_src=src, op=op, sha=src, spa=CLIENT_IP, tha=b"\0" * 6, tpa=vip
    )


def _ask(port: Port, frame: bytes, timeout: float = 0.3) -> list[bytes]:
    port.drain()
    port.send(frame)
    return port.receive(timeout, want=1)


def _filters(lab: Lab) -> str:
    return sh("ip", "netns", "exec", lab.node, "tc", "filter", "show", "dev", "n0", "ingress")


def test_arping_is_answered_with_the_node_mac_and_counted(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    assert loader.cmd(f"add {VIP} {lab.node_ifindex}") is True
    res = arping(lab.client, VIP, 5)
    assert res.received == 5
    assert res.macs == {lab.node_mac.hex(":")}
    with ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}", readonly=True) as m:
        assert m.get(VIP, lab.node_ifindex) == 5
    assert FILTER_NAME in _filters(lab)


def test_bpftool_dump_prints_field_names_like_the_seed(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert arping(lab.client, VIP, 3).received == 3
    out = sh("bpftool", "map", "dump", "pinned", f"{bpf_root}/{RESPONDER_MAP_NAME}")
    assert '"ip4": ' in out and '"ifindex": ' in out and '"responses_sent": ' in out
    ip4 = int.from_bytes(socket.inet_aton(VIP), "little")  # network-order bytes read as a LE u32
    assert json.loads(out) == [
        {"key": {"ip4": ip4, "ifindex": lab.node_ifindex}, "value": {"responses_sent": 3}}
    ]
    shown = sh("bpftool", "map", "show", "pinned", f"{bpf_root}/{RESPONDER_MAP_NAME}")
    assert "hash" in shown and "flags 0x1" in shown and "max_entries 4096" in shown


def test_no_answer_for_a_vip_not_in_the_map(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert arping(lab.client, UNKNOWN_VIP, 2).received == 0
    assert _ask(client_port, _request(lab, UNKNOWN_VIP)) == []
    assert len(_ask(client_port, _request(lab, VIP))) == 1  # control


def test_no_answer_for_a_vip_in_the_map_for_another_interface(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0", "--attach", "d0")
    loader.cmd(f"add {OTHER_VIP} {lab.other_ifindex}")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert arping(lab.client, OTHER_VIP, 2).received == 0
    assert _ask(client_port, _request(lab, OTHER_VIP)) == []
    assert len(_ask(client_port, _request(lab, VIP))) == 1  # control
    assert loader.cmd(f"get {OTHER_VIP} {lab.other_ifindex}") == 0


def test_no_answer_to_an_arp_reply(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert _ask(client_port, _request(lab, VIP, op=ARPOP_REPLY)) == []
    assert len(_ask(client_port, _request(lab, VIP))) == 1  # control
    assert loader.cmd(f"get {VIP} {lab.node_ifindex}") == 1


def test_no_answer_to_a_frame_from_the_node_interface_own_mac(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert _ask(client_port, _request(lab, VIP, src=lab.node_mac)) == []
    assert len(_ask(client_port, _request(lab, VIP))) == 1  # control


def test_the_reply_is_the_request_rewritten_as_the_model_says(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    for frame in (_request(lab, VIP), _request(lab, VIP)[:42], _request(lab, VIP) + b"\xaa" * 20):
        want = expected_reply(
            frame,
            ifindex=lab.node_ifindex,
            iface_mac=lab.node_mac,
            keys={(socket.inet_aton(VIP), lab.node_ifindex)},
        )
        assert want is not None
        assert _ask(client_port, frame) == [want]


def test_removing_a_key_silences_the_vip_on_the_next_request(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert arping(lab.client, VIP, 2).received == 2
    with ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}") as m:
        assert len(_ask(client_port, _request(lab, VIP))) == 1
        assert m.delete(VIP, lab.node_ifindex) is True
        assert _ask(client_port, _request(lab, VIP)) == []  # the very next request
        assert m.delete(VIP, lab.node_ifindex) is False
    assert arping(lab.client, VIP, 2).received == 0


def _neigh_mac(lab: Lab, ip: str) -> str | None:
    entries = json.loads(sh("ip", "-n", lab.client, "-j", "neigh", "show", ip, "dev", "c0") or "[]")
    return entries[0].get("lladdr") if entries else None


def test_readding_a_key_with_garp_moves_a_fresh_client_neighbour_entry(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    """RFC 5227 form (tha = sha) overrides an entry updated < 1 s ago; tha = broadcast does not."""
    loader = loaders(lab.node, bpf_root, "--attach", "n0", "--garp-count", "1")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    loader.cmd(f"del {VIP} {lab.node_ifindex}")
    old_mac = "02:00:5e:00:53:99"
    node_port = Port(lab.node, "n0")
    try:
        for _attempt in range(3):
            t0 = time.monotonic()
            sh(
                "ip",
                "-n",
                lab.client,
                "neigh",
                "replace",
                VIP,
                "lladdr",
                old_mac,
                "dev",
                "c0",
                "nud",
                "reachable",
            )
            # The reference's form (tha = broadcast) is ignored inside the 1 s locktime...
            node_port.send(
                arp_frame(
                    eth_dst=BROADCAST,
                    eth_src=lab.node_mac,
                    op=ARPOP_REPLY,
                    sha=lab.node_mac,
                    spa=VIP,
                    tha=BROADCAST,
                    tpa=VIP,
                )
            )
            time.sleep(0.05)
            ignored = _neigh_mac(lab, VIP) == old_mac
            # ...ours (re-adding the key, then the GARP) is not.
            assert loader.cmd(f"add {VIP} {lab.node_ifindex}") is True
            loader.cmd(f"garp {VIP} {lab.node_ifindex}")
            sent_after = time.monotonic() - t0
            moved = False
            for _ in range(20):
                if _neigh_mac(lab, VIP) == lab.node_mac.hex(":"):
                    moved = True
                    break
                time.sleep(0.01)
            if sent_after < 0.9:  # otherwise the locktime had passed: inconclusive, retry
                break
            loader.cmd(f"del {VIP} {lab.node_ifindex}")
        assert ignored, "a tha=broadcast GARP should not override a fresh entry"
        assert moved, f"neighbour still at {_neigh_mac(lab, VIP)}"
    finally:
        node_port.close()
    assert arping(lab.client, VIP, 2).received == 2


def test_garp_frame_on_the_wire(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--garp-count", "3", "--garp-interval", "0.1")
    client_port.drain()
    loader.cmd(f"garp {VIP} {lab.node_ifindex}")
    frames = client_port.receive(2.0, want=3)
    want = lab.node_mac
    assert len(frames) == 3
    for f in frames:
        assert len(f) == 60
        assert f[:6] == BROADCAST and f[6:12] == want and f[12:14] == b"\x08\x06"
        assert f[20:22] == b"\x00\x02"  # reply
        assert f[22:28] == want and f[32:38] == want  # sha == tha
        assert f[28:32] == f[38:42] == socket.inet_aton(VIP)


def test_garp_on_a_missing_interface_reports_the_reference_error(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab.node, bpf_root)
    try:
        loader.cmd(f"garp {VIP} 9999")
    except RuntimeError as e:
        assert "gratuitous arp sender interface 9999 not found" in str(e)
    else:
        raise AssertionError("garp on a missing interface succeeded")


def test_answers_stop_when_the_liveness_stamp_is_older_than_the_max_age(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(
        lab.node,
        bpf_root,
        "--attach",
        "n0",
        "--max-liveness-ns",
        "300000000",
        "--stamp-interval",
        "0.05",
    )
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert len(_ask(client_port, _request(lab, VIP))) == 1
    loader.cmd("stop-stamp")
    time.sleep(0.6)
    assert _ask(client_port, _request(lab, VIP)) == []
    assert arping(lab.client, VIP, 2).received == 0
    loader.cmd("start-stamp")
    time.sleep(0.1)
    assert len(_ask(client_port, _request(lab, VIP))) == 1
    loader.cmd("clear-stamp")  # planned handover: silent at once
    assert _ask(client_port, _request(lab, VIP)) == []


def test_a_restarted_loader_adopts_program_and_maps_without_a_gap(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.cmd(f"add {VIP} {lab.node_ifindex}")
    first.cmd(f"add {VIP2} {lab.node_ifindex}")
    assert arping(lab.client, VIP, 5).received == 5
    before = _filters(lab)

    # arping every 10 ms across: kill -9 of the first loader, start and attach of the second.
    probes = 500
    pinger = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.client,
            "arping",
            "-c",
            str(probes),
            "-W",
            "0.01",
            "-w",
            "30",
            "-I",
            "c0",
            VIP,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    first.stop("kill")
    second = loaders(lab.node, bpf_root, "--attach", "n0")
    assert pinger.poll() is None, "the restart outlasted the probing: raise the probe count"
    out, _ = pinger.communicate(timeout=60)
    assert f"{probes} packets transmitted, {probes} packets received" in out, out[-500:]

    after = _filters(lab)
    assert after.count(FILTER_NAME) == 2  # ARP and IPv6
    assert before != after  # a new program id, swapped in place
    assert second.cmd(f"add {VIP} {lab.node_ifindex}") is False  # already there: kept
    assert second.cmd(f"get {VIP} {lab.node_ifindex}") == 5 + probes
    assert second.cmd(f"get {VIP2} {lab.node_ifindex}") == 0
    assert arping(lab.client, VIP, 2).received == 2
    assert second.cmd(f"get {VIP} {lab.node_ifindex}") == 5 + probes + 2


def test_plain_exit_keeps_answering_and_disable_detaches_and_unpins(
    lab_with_node_ip: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    lab = lab_with_node_ip
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.cmd(f"add {VIP} {lab.node_ifindex}")
    first.stop("exit")
    assert arping(lab.client, VIP, 2).received == 2  # nobody runs; the stamp is still fresh
    second = loaders(lab.node, bpf_root)
    assert second.ready["attached"] == [lab.node_ifindex]  # adoption sees the filter
    second.stop("disable")
    assert FILTER_NAME not in _filters(lab)
    assert "clsact" not in sh("ip", "netns", "exec", lab.node, "tc", "qdisc", "show", "dev", "n0")
    assert sh("ls", bpf_root).split() == []
    assert arping(lab.client, VIP, 2).received == 0
    assert arping(lab.client, NODE_IP, 2).received == 2  # the kernel still answers for itself


def test_attach_is_idempotent_and_detach_stops_answering(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd("attach n0")
    loader.cmd("attach n0")
    assert _filters(lab).count(FILTER_NAME) == 2  # ARP and IPv6
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert len(_ask(client_port, _request(lab, VIP))) == 1
    assert loader.cmd("detach n0") is True
    assert loader.cmd("detach n0") is False
    assert _ask(client_port, _request(lab, VIP)) == []


def test_the_kernel_keeps_answering_for_its_own_address_with_the_program_attached(
    lab_with_node_ip: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    lab = lab_with_node_ip
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP} {lab.node_ifindex}")
    assert arping(lab.client, NODE_IP, 2).received == 2
    assert arping(lab.client, VIP, 2).received == 2
    assert loader.cmd(f"get {VIP} {lab.node_ifindex}") == 2


def test_macs_of_vanished_interfaces_are_forgotten_on_the_next_attach(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "d0")
    with IfaceMap.open(f"{bpf_root}/{IFACES_MAP_NAME}", readonly=True) as ifaces:
        assert set(ifaces.items()) == {lab.other_ifindex}
        sh("ip", "-n", lab.node, "link", "del", "d0")
        loader.cmd("attach n0")
        assert ifaces.items() == {lab.node_ifindex: lab.node_mac}


def test_a_restarted_agent_does_not_revive_inherited_keys_before_it_vouches_for_them(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    """Decision 8 across a restart: the adopted program answers on the old agent's last stamp
    only until it ages out; the new agent's start alone never extends it."""
    max_age_s = 3.0
    first = loaders(
        lab.node,
        bpf_root,
        "--attach",
        "n0",
        "--max-liveness-ns",
        str(int(max_age_s * 1e9)),
        "--stamp-interval",
        "0.05",
    )
    first.cmd(f"add {VIP} {lab.node_ifindex}")
    assert len(_ask(client_port, _request(lab, VIP))) == 1
    first.stop("kill")
    killed = time.monotonic()
    second = loaders(
        lab.node,
        bpf_root,
        "--attach",
        "n0",
        "--max-liveness-ns",
        str(int(max_age_s * 1e9)),
        "--defer-stamp",
    )
    assert second.ready["stamp_age_ns"] is not None
    if time.monotonic() - killed < max_age_s - 0.5:  # still inside the old stamp's validity
        assert len(_ask(client_port, _request(lab, VIP))) == 1
    time.sleep(max(0.0, killed + max_age_s + 0.3 - time.monotonic()))
    assert _ask(client_port, _request(lab, VIP)) == []  # aged out; start did not revive it
    second.cmd("start-stamp")  # the reconciler has initialised: vouch
    assert len(_ask(client_port, _request(lab, VIP))) == 1
