"""The gratuitous ARP frame: RFC 5227 reply to broadcast, tha = sha, 60 bytes."""

from __future__ import annotations

import pytest

from bpf.garp import garp_frame

MAC = bytes.fromhex("020000005301")


def test_exact_bytes() -> None:
    frame = garp_frame(MAC, "198.51.100.10")
    assert frame == bytes.fromhex(
        "ffffffffffff"  # Ethernet dst: broadcast
        "020000005301"  # Ethernet src: interface MAC
        "0806"  # ARP
        "0001"
        "0800"
        "06"
        "04"  # Ethernet / IPv4, 6 / 4
        "0002"  # op: reply
        "020000005301"
        "c633640a"  # sha = MAC, spa = VIP
        "020000005301"
        "c633640a"  # tha = sha (not broadcast: Linux locktime), tpa = VIP
    ) + bytes(18)
    assert len(frame) == 60


def test_rejects_a_non_ethernet_mac() -> None:
    with pytest.raises(ValueError):
        garp_frame(b"\x01\x02", "198.51.100.10")
