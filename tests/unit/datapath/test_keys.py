"""Key encoding of cilium_l2_responder_v4: ip4 in network order, ifindex in host order."""

from __future__ import annotations

import sys

import pytest

from bpf.maps import decode_key, encode_key


def test_ip4_holds_the_address_bytes_in_network_order() -> None:
    key = encode_key("198.51.100.10", 50)
    assert key[:4] == bytes([198, 51, 100, 10])
    assert len(key) == 8


@pytest.mark.skipif(sys.byteorder != "little", reason="bpftool's view on little-endian hosts")
def test_bpftool_prints_ip4_as_the_little_endian_u32_of_those_bytes() -> None:
    key = encode_key("198.51.100.10", 50)
    assert int.from_bytes(key[:4], "little") == 174339014
    assert int.from_bytes(key[4:], "little") == 50
    # the seed's example: 10.0.10.0 prints as 655370
    assert int.from_bytes(encode_key("10.0.10.0", 1)[:4], "little") == 655370


def test_round_trip() -> None:
    for ip, idx in (("203.0.113.7", 1), ("192.0.2.255", 2**32 - 1), ("0.0.0.1", 7)):
        assert decode_key(encode_key(ip, idx)) == (ip, idx)


@pytest.mark.parametrize(
    ("ip", "ifindex"), [("2001:db8::1", 1), ("198.51.100.300", 1), ("198.51.100.1", 0)]
)
def test_rejects_what_cannot_be_a_key(ip: str, ifindex: int) -> None:
    with pytest.raises(ValueError):
        encode_key(ip, ifindex)
