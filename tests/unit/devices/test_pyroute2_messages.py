"""Converting rtnetlink messages to updates: messages are encoded and parsed back by pyroute2,
as they would arrive from the kernel, but no socket is opened."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from agent.devices.pyroute2_source import normalize_hw_addr, updates_from_message
from agent.devices.source import AddrUpdate, LinkUpdate, RouteUpdate

HEADER = {"flags": 0, "sequence_number": 0, "pid": 0}


def parsed(cls: Any, msg_type: int, fields: dict[str, Any], attrs: list[Any]) -> Any:
    msg = cls()
    msg["header"] = {"type": msg_type, **HEADER}
    for k, v in fields.items():
        msg[k] = v
    msg["attrs"] = attrs
    msg.encode()
    out = cls(msg.data)
    out.decode()
    return out


def test_link() -> None:
    msg = parsed(
        ifinfmsg,
        16,
        {"family": 0, "index": 5, "flags": 0x11043},
        [
            ("IFLA_IFNAME", "veth0"),
            ("IFLA_MTU", 9000),
            ("IFLA_ADDRESS", "02:AB:00:00:00:05"),
            ("IFLA_MASTER", 3),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]}),
        ],
    )
    assert updates_from_message(msg) == [
        LinkUpdate(5, False, "veth0", "veth", 9000, "02:ab:00:00:00:05", 0x11043, 3)
    ]


def test_link_without_kind_is_a_device_and_zero_mac_is_empty() -> None:
    msg = parsed(
        ifinfmsg,
        16,
        {"family": 0, "index": 1, "flags": 0x49},
        [("IFLA_IFNAME", "lo"), ("IFLA_MTU", 65536), ("IFLA_ADDRESS", "00:00:00:00:00:00")],
    )
    assert updates_from_message(msg) == [LinkUpdate(1, False, "lo", "device", 65536, "", 0x49, 0)]


def test_link_delete_and_bridge_port_messages() -> None:
    deleted = parsed(ifinfmsg, 17, {"family": 0, "index": 5}, [("IFLA_IFNAME", "veth0")])
    assert updates_from_message(deleted) == [LinkUpdate(5, deleted=True)]
    # An AF_BRIDGE DELLINK means "left the bridge", not "gone".
    port = parsed(ifinfmsg, 17, {"family": socket.AF_BRIDGE, "index": 5}, [])
    assert updates_from_message(port) == []


def test_addresses() -> None:
    v4 = parsed(
        ifaddrmsg,
        20,
        {"family": socket.AF_INET, "prefixlen": 24, "flags": 0x80, "scope": 0, "index": 5},
        [("IFA_ADDRESS", "198.51.100.2"), ("IFA_LOCAL", "198.51.100.2"), ("IFA_FLAGS", 0x81)],
    )
    assert updates_from_message(v4) == [
        AddrUpdate(5, "198.51.100.2", 24, deleted=False, secondary=True, scope=0)
    ]
    ptp = parsed(
        ifaddrmsg,
        21,
        {"family": socket.AF_INET, "prefixlen": 32, "flags": 0, "scope": 0, "index": 6},
        [("IFA_ADDRESS", "192.0.2.1"), ("IFA_LOCAL", "192.0.2.2")],
    )
    assert updates_from_message(ptp) == [AddrUpdate(6, "192.0.2.2", 32, deleted=True)]
    v6 = parsed(
        ifaddrmsg,
        20,
        {"family": socket.AF_INET6, "prefixlen": 64, "flags": 0, "scope": 253, "index": 5},
        [("IFA_ADDRESS", "FE80:0:0:0:0:0:0:1")],
    )
    assert updates_from_message(v6) == [AddrUpdate(5, "fe80::1", 64, scope=253)]


@pytest.mark.parametrize(
    ("fields", "attrs", "expected"),
    [
        (
            {"family": socket.AF_INET, "dst_len": 0, "table": 254, "flags": 0},
            [("RTA_TABLE", 254), ("RTA_OIF", 5), ("RTA_GATEWAY", "198.51.100.1")],
            [RouteUpdate(5, "0.0.0.0/0", 254, gateway="198.51.100.1")],
        ),
        (
            {"family": socket.AF_INET6, "dst_len": 0, "table": 254, "flags": 0},
            [("RTA_TABLE", 254), ("RTA_OIF", 5), ("RTA_PRIORITY", 1024)],
            [RouteUpdate(5, "::/0", 254, priority=1024)],
        ),
        (
            {"family": socket.AF_INET, "dst_len": 24, "table": 252, "flags": 0},
            [("RTA_TABLE", 1000), ("RTA_DST", "192.0.2.0"), ("RTA_OIF", 7)],
            [RouteUpdate(7, "192.0.2.0/24", 1000)],
        ),
        (
            {"family": socket.AF_INET, "dst_len": 24, "table": 254, "flags": 0},
            [
                ("RTA_TABLE", 254),
                ("RTA_DST", "192.0.2.0"),
                (
                    "RTA_MULTIPATH",
                    [
                        {"oif": 5, "attrs": [("RTA_GATEWAY", "198.51.100.1")]},
                        {"oif": 6, "attrs": [("RTA_GATEWAY", "203.0.113.1")]},
                    ],
                ),
            ],
            [
                RouteUpdate(5, "192.0.2.0/24", 254, gateway="198.51.100.1"),
                RouteUpdate(6, "192.0.2.0/24", 254, gateway="203.0.113.1"),
            ],
        ),
        (  # blackhole: no device
            {"family": socket.AF_INET, "dst_len": 24, "table": 254, "flags": 0, "type": 6},
            [("RTA_TABLE", 254), ("RTA_DST", "192.0.2.0")],
            [],
        ),
        (  # a route cache entry is not a route
            {"family": socket.AF_INET6, "dst_len": 128, "table": 254, "flags": 0x200},
            [("RTA_TABLE", 254), ("RTA_DST", "2001:db8::1"), ("RTA_OIF", 5)],
            [],
        ),
    ],
)
def test_routes(fields: dict[str, Any], attrs: list[Any], expected: list[RouteUpdate]) -> None:
    assert updates_from_message(parsed(rtmsg, 24, fields, attrs)) == expected


def test_route_delete() -> None:
    msg = parsed(
        rtmsg,
        25,
        {"family": socket.AF_INET, "dst_len": 24, "table": 254, "flags": 0},
        [("RTA_TABLE", 254), ("RTA_DST", "198.51.100.0"), ("RTA_OIF", 5)],
    )
    assert updates_from_message(msg) == [RouteUpdate(5, "198.51.100.0/24", 254, deleted=True)]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("AA:BB:CC:00:11:22", "aa:bb:cc:00:11:22"),
        ("00:00:00:00:00:00", ""),
        (None, ""),
        ("", ""),
        ("00:00:00:00", ""),
    ],
)
def test_hw_addr(raw: str | None, shown: str) -> None:
    assert normalize_hw_addr(raw) == shown


def test_errors_are_described_by_name() -> None:
    from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

    from agent.devices.pyroute2_source import describe

    assert describe(OSError(105, None)) == "ENOBUFS (No buffer space available)"
    assert describe(Pyroute2Error(16)) == "EBUSY (Device or resource busy)"
    assert describe(OSError("closed")) == "closed"


def test_an_unopened_source_refuses_to_receive() -> None:
    from agent.devices.pyroute2_source import Pyroute2Source
    from agent.devices.source import NetlinkError

    with pytest.raises(NetlinkError, match="not open"):
        Pyroute2Source().receive(0.01)
    Pyroute2Source().close()  # closing an unopened source is fine
