"""NetState: folding updates, dead links, and the routes the kernel drops silently."""

from __future__ import annotations

from agent.devices.netstate import NetState
from agent.devices.source import Update
from common.tables.devices import DeviceAddress

from .helpers import DOWN, addr, gone, link, route, uplink


def test_addresses_in_netlink_order_duplicates_ignored_flags_kept() -> None:
    s = NetState()
    updates: list[Update] = [
        link(3, "eth0"),
        addr(3, "198.51.100.2"),
        addr(3, "2001:db8::2", 64),
        addr(3, "198.51.100.3", secondary=True),
        addr(3, "198.51.100.2"),  # repeated: ignored
        addr(3, "198.51.100.2", 32),  # same address, other prefix: shown once
        addr(3, "fe80::2", 64),
    ]
    for u in updates:
        s.apply(u, 0.0)
    d = s.device(3)
    assert d is not None
    assert d.addresses == (
        DeviceAddress("198.51.100.2"),
        DeviceAddress("2001:db8::2"),
        DeviceAddress("198.51.100.3", secondary=True),
        DeviceAddress("fe80::2", scope=253),
    )
    s.apply(addr(3, "198.51.100.2", deleted=True), 0.0)
    d = s.device(3)
    assert d is not None
    # the /32 copy is still there, so the address still shows, where the /32 came
    assert [a.addr for a in d.addresses] == [
        "2001:db8::2",
        "198.51.100.3",
        "198.51.100.2",
        "fe80::2",
    ]


def test_link_fields_become_the_row() -> None:
    s = NetState()
    s.apply(link(4, "bond0", "bond", master=0), 0.0)
    s.apply(link(5, "eth1", master=4), 0.0)
    d = s.device(5)
    assert d is not None
    assert (d.name, d.type, d.mtu, d.hw_addr, d.raw_flags, d.master_index) == (
        "eth1",
        "device",
        1500,
        "02:00:00:00:00:05",
        0x1043,
        4,
    )


def test_dead_ifindex_ignores_late_messages_until_a_new_link() -> None:
    s = NetState()
    for u in uplink(3, "eth0", "198.51.100.2", "198.51.100.0/24"):
        s.apply(u, 0.0)
    assert s.apply(gone(3), 1.0) == 3
    assert s.device(3) is None and s.is_dead(3)
    assert s.apply(addr(3, "198.51.100.9"), 1.1) is None
    assert s.apply(route(3, "0.0.0.0/0", gw="198.51.100.1"), 1.1) is None
    assert s.device(3) is None
    s.apply(link(3, "eth0"), 2.0)
    assert not s.is_dead(3)
    d = s.device(3)
    assert d is not None and d.addresses == ()  # nothing from before the delete survives
    assert s.route_facts(3).has_global_unicast_route is False


def test_dead_ifindexes_expire() -> None:
    s = NetState(dead_link_retention=10.0)
    s.apply(link(3, "eth0"), 0.0)
    s.apply(gone(3), 1.0)
    s.expire_dead(5.0)
    assert s.is_dead(3)
    s.expire_dead(12.0)
    assert not s.is_dead(3)


def test_addresses_before_link_give_a_nameless_device() -> None:
    s = NetState()
    s.apply(addr(9, "198.51.100.9"), 0.0)
    d = s.device(9)
    assert d is not None and d.name == "" and d.addresses


def test_deletes_and_deviceless_routes_create_nothing() -> None:
    s = NetState()
    assert s.apply(addr(9, "198.51.100.9", deleted=True), 0.0) is None
    assert s.apply(route(9, "198.51.100.0/24", deleted=True), 0.0) is None
    assert s.apply(route(0, "192.0.2.0/24"), 0.0) is None
    assert s.ifindexes() == []


def test_route_facts() -> None:
    s = NetState()
    s.apply(link(3, "veth0", "veth"), 0.0)
    assert s.route_facts(3).has_global_unicast_route is False
    s.apply(route(3, "fe80::/64"), 0.0)
    s.apply(route(3, "ff00::/8", table=255), 0.0)
    assert s.route_facts(3).has_global_unicast_route is False
    s.apply(route(3, "192.0.2.0/24", table=100), 0.0)  # any table counts
    assert s.route_facts(3).has_global_unicast_route is True
    s.apply(route(3, "0.0.0.0/0", table=100, gw="192.0.2.1"), 0.0)
    assert s.route_facts(3).has_default_route is False  # only the main table counts
    s.apply(route(3, "::/0", gw="fe80::1"), 0.0)
    assert s.route_facts(3).has_default_route is True
    s.apply(route(3, "::/0", gw="fe80::1", deleted=True), 0.0)
    assert s.route_facts(3).has_default_route is False
    s.apply(route(3, "192.0.2.0/24", table=100, deleted=True), 0.0)
    assert s.route_facts(3).has_global_unicast_route is False


def test_two_default_routes_one_deleted_keeps_the_other() -> None:
    s = NetState()
    s.apply(link(3, "veth0", "veth"), 0.0)
    s.apply(route(3, "0.0.0.0/0", gw="198.51.100.1"), 0.0)
    s.apply(route(3, "0.0.0.0/0", gw="198.51.100.254"), 0.0)
    s.apply(route(3, "0.0.0.0/0", gw="198.51.100.1", deleted=True), 0.0)
    assert s.route_facts(3).has_default_route is True


def test_link_down_drops_ipv4_routes_like_the_kernel() -> None:
    s = NetState()
    for u in uplink(3, "veth0", "198.51.100.2", "198.51.100.0/24", kind="veth"):
        s.apply(u, 0.0)
    s.apply(route(3, "0.0.0.0/0", gw="198.51.100.1"), 0.0)
    s.apply(route(3, "::/0", gw="fe80::1"), 0.0)
    s.apply(route(3, "::/0", gw="fe80::1", deleted=True), 0.0)  # IPv6 does notify
    s.apply(link(3, "veth0", "veth", flags=DOWN), 1.0)
    facts = s.route_facts(3)
    assert facts.has_default_route is False
    assert facts.has_global_unicast_route is True  # the local table's route stays
    s.apply(link(3, "veth0", "veth"), 2.0)
    assert s.route_facts(3).has_default_route is False  # the kernel does not restore it


def test_losing_the_last_ipv4_address_drops_ipv4_routes() -> None:
    s = NetState()
    for u in uplink(3, "veth0", "198.51.100.2", "198.51.100.0/24", kind="veth"):
        s.apply(u, 0.0)
    s.apply(addr(3, "198.51.100.3"), 0.0)
    s.apply(route(3, "0.0.0.0/0", gw="198.51.100.1"), 0.0)
    s.apply(addr(3, "198.51.100.3", deleted=True), 0.0)
    assert s.route_facts(3).has_default_route is True  # another IPv4 address remains
    s.apply(addr(3, "198.51.100.2", deleted=True), 0.0)
    assert s.route_facts(3) == s.route_facts(999)  # nothing left
