"""The lab's pure pieces: names and addresses, the state file, the ARP prober's frames and
summary, the nft rules of the API faults, and docs that name every command."""

from __future__ import annotations

import ipaddress
import re
import struct
from pathlib import Path

import pytest

from lab import arpwatch
from lab import inventory as state
from lab.cli import command
from lab.inventory import LabState, NodeState, Proc
from lab.lab import api_fault_rules
from lab.netns import LabError

REPO = Path(__file__).resolve().parents[3]


def test_every_lan_address_is_a_documentation_address() -> None:
    lan = ipaddress.ip_network("198.51.100.0/24")
    addresses = [state.API_LAN_IP, state.CLIENT_IP]
    addresses += [state.node_ip(i) for i in range(1, state.MAX_NODES + 1)]
    addresses += [state.vip(i) for i in range(1, state.MAX_SERVICES + 1)]
    assert all(ipaddress.ip_address(a) in lan for a in addresses)
    assert len(set(addresses)) == len(addresses)
    assert ipaddress.ip_address(state.vip(state.MAX_SERVICES)) != lan.broadcast_address


def test_host_links_are_distinct_slash30s_of_203_0_113() -> None:
    net = ipaddress.ip_network("203.0.113.0/24")
    seen = set()
    for k in range(64):
        lab = LabState(name="x", host_link_net=k)
        pair = ipaddress.ip_interface(f"{lab.host_ip}/30").network
        assert pair.subnet_of(net)  # type: ignore[arg-type]
        assert ipaddress.ip_address(lab.api_host_ip) in pair
        seen.add(pair)
    assert len(seen) == 64


@pytest.mark.parametrize("name", ["", "L2lab", "1lab", "toolongname", "a-b"])
def test_bad_lab_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="lab name"):
        state.check_name(name)


def test_state_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "RUN_DIR", tmp_path)
    lab = LabState(name="t1", nodes=2, services=3, timers=("3s", "1s", "200ms"), host_link_net=5)
    lab.node_states["node1"] = NodeState(
        "node1", 1, "t1-node1", sandbox=Proc(10, 20), api_fault="stall"
    )
    lab.namespaces = ["t1-lan", "t1-node1"]
    lab.bin_dir = "/var/cache/l2announcer/controlplane/x/bin"
    lab.control_plane = {"etcd": Proc(30, 40), "kube-apiserver": Proc(31, 41)}
    lab.save()
    loaded = LabState.load("t1")
    assert loaded == lab
    assert state.known_labs() == ["t1"]
    assert LabState.load("missing") is None


def test_probe_frames_carry_their_sequence_as_sender_mac() -> None:
    frame = arpwatch.request_frame(258, "198.51.100.2", "198.51.100.101")
    assert len(frame) == 60
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == frame[22:28] == bytes.fromhex("024c32ff0102")
    assert struct.unpack("!H", frame[20:22]) == (1,)
    assert frame[38:42] == bytes([198, 51, 100, 101])


def test_summary_counts_double_answers_and_the_longest_gap() -> None:
    a, b = "02:4c:32:00:01:01", "02:4c:32:00:01:02"
    probes = [
        arpwatch.Probe(0, 0.00, [(a, 0.0)]),
        arpwatch.Probe(1, 0.02, []),
        arpwatch.Probe(2, 0.04, []),
        arpwatch.Probe(3, 0.06, [(b, 0.0), (a, 0.0)]),
        arpwatch.Probe(4, 0.08, [(b, 0.0)]),
    ]
    s = arpwatch.summarize(probes)
    assert s == {"requests": 5, "answered": 3, "double": 1, "macs": [a, b, a, b], "outage": 0.06}


def _rules(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("ip ")]


def test_a_stall_drops_the_nodes_packets_with_the_apiserver_both_ways() -> None:
    script = api_fault_rules("stall", "198.51.100.1", 6443)
    assert _rules(script) == [
        "ip daddr 198.51.100.1 tcp dport 6443 drop",
        "ip saddr 198.51.100.1 tcp sport 6443 drop",
    ]
    # It replaces any earlier fault: the lab's table is deleted first, in the same transaction.
    assert script.startswith("table ip l2lab {}\ndelete table ip l2lab\n")
    assert "hook output" in script and "hook input" in script


def test_a_refusal_resets_both_ways_but_lets_its_own_resets_reach_the_node() -> None:
    rules = _rules(api_fault_rules("refuse", "198.51.100.1", 6443))
    assert rules == [
        "ip daddr 198.51.100.1 tcp dport 6443 reject with tcp reset",
        "ip saddr 198.51.100.1 tcp sport 6443 tcp flags & rst == 0 reject with tcp reset",
    ]


def test_heal_only_deletes_the_labs_table_and_unknown_faults_are_refused() -> None:
    assert api_fault_rules("heal") == "table ip l2lab {}\ndelete table ip l2lab\n"
    with pytest.raises(LabError, match="stall, refuse, heal"):
        api_fault_rules("partition")


def test_docs_name_every_l2lab_command() -> None:
    text = (REPO / "docs" / "lab.md").read_text()
    names = command().list_commands(None)
    assert {"up", "status", "kubectl", "exec", "agent", "api", "logs", "down"} <= set(names)
    missing = [n for n in names if not re.search(rf"`l2lab {n}\b", text)]
    assert missing == []
