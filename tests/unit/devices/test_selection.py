"""Every device selection rule of the reference, in its order, with its reason strings."""

from __future__ import annotations

import dataclasses

import pytest

from agent.devices.options import DevicesOptions
from agent.devices.selection import (
    RouteFacts,
    is_global_unicast,
    kernel_supports_l3_devices,
    select_device,
)
from common.tables.devices import Device, DeviceAddress

UP_BCAST_MCAST_RUNNING = 0x1043
ADDR = (DeviceAddress("198.51.100.2"),)
ROUTED = RouteFacts(has_default_route=True, has_global_unicast_route=True)
NO_ROUTES = RouteFacts()
AUTO = DevicesOptions()


def dev(**kw: object) -> Device:
    base = Device(
        ifindex=7,
        name="eth0",
        type="device",
        mtu=1500,
        hw_addr="02:00:00:00:00:07",
        raw_flags=UP_BCAST_MCAST_RUNNING,
        addresses=ADDR,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def opts(*devices: str, force: bool = False) -> DevicesOptions:
    return DevicesOptions(devices=devices, force_device_detection=force)


# (id, device, routes, options, expected) -- in the order of the rules.
CASES: list[tuple[str, Device, RouteFacts, DevicesOptions, tuple[bool, str]]] = [
    # 1. no name yet
    (
        "1 link not seen yet",
        dev(name="", type="", addresses=ADDR),
        ROUTED,
        AUTO,
        (False, "link not seen yet"),
    ),
    (
        "1 before everything, even a filter",
        dev(name="", raw_flags=0, addresses=()),
        ROUTED,
        opts("eth+"),
        (False, "link not seen yet"),
    ),
    # 2. no addresses
    ("2 no addresses", dev(addresses=()), ROUTED, AUTO, (False, "device has no addresses")),
    (
        "2 before the flags check",
        dev(addresses=(), raw_flags=0),
        ROUTED,
        AUTO,
        (False, "device has no addresses"),
    ),
    (
        "2 before the user filter",
        dev(addresses=()),
        ROUTED,
        opts("eth0"),
        (False, "device has no addresses"),
    ),
    # 3. not up
    (
        "3 down",
        dev(raw_flags=0x1002),
        ROUTED,
        AUTO,
        (False, "missing required flag (mask=0x1, flags=0x1002)"),
    ),
    (
        "3 no flags at all",
        dev(raw_flags=0),
        ROUTED,
        AUTO,
        (False, "missing required flag (mask=0x1, flags=0x0)"),
    ),
    (
        "3 before the user filter",
        dev(raw_flags=0x1002),
        ROUTED,
        opts("eth0"),
        (False, "missing required flag (mask=0x1, flags=0x1002)"),
    ),
    # 4. user filter
    ("4 exact match selects", dev(), NO_ROUTES, opts("eth0"), (True, "")),
    (
        "4 match overrides every later rule: bridge",
        dev(name="br0", type="bridge"),
        NO_ROUTES,
        opts("br0"),
        (True, ""),
    ),
    (
        "4 match overrides: loopback flag",
        dev(name="lo", raw_flags=0x49, hw_addr=""),
        NO_ROUTES,
        opts("lo"),
        (True, ""),
    ),
    ("4 match overrides: enslaved", dev(master_index=3), NO_ROUTES, opts("eth0"), (True, "")),
    ("4 match overrides: excluded prefix", dev(name="lxc12"), NO_ROUTES, opts("lxc+"), (True, "")),
    (
        "4 match overrides: veth without default route",
        dev(name="veth1", type="veth"),
        NO_ROUTES,
        opts("veth1"),
        (True, ""),
    ),
    (
        "4 match overrides: L3 device on an old kernel",
        dev(hw_addr=""),
        NO_ROUTES,
        opts("eth0"),
        (True, ""),
    ),
    ("4 wildcard matches the bare prefix", dev(name="eth"), NO_ROUTES, opts("eth+"), (True, "")),
    ("4 wildcard matches eth10", dev(name="eth10"), NO_ROUTES, opts("eth+"), (True, "")),
    (
        "4 exact entry is not a prefix",
        dev(name="eth00"),
        ROUTED,
        opts("eth0"),
        (False, "not matching user filter [eth0]"),
    ),
    (
        "4 no match",
        dev(name="ens3"),
        ROUTED,
        opts("eth0", "eth+"),
        (False, "not matching user filter [eth0 eth+]"),
    ),
    (
        "4 no regex or glob",
        dev(name="eth0"),
        ROUTED,
        opts("eth*"),
        (False, "not matching user filter [eth*]"),
    ),
    (
        "4 force-device-detection falls through and selects",
        dev(name="ens3"),
        ROUTED,
        opts("eth0", force=True),
        (True, ""),
    ),
    (
        "4 force-device-detection falls through to a later rule",
        dev(name="ens3", type="bridge"),
        ROUTED,
        opts("eth0", force=True),
        (False, "bridge-like device, use --devices to override"),
    ),
    (
        "4 force-device-detection still selects a match",
        dev(name="br0", type="bridge"),
        NO_ROUTES,
        opts("br0", force=True),
        (True, ""),
    ),
    # 5. excluded flags
    (
        "5 loopback",
        dev(name="lo", raw_flags=0x49, hw_addr=""),
        ROUTED,
        AUTO,
        (False, "excluded flag set (mask=0x808, flags=0x49)"),
    ),
    (
        "5 bond slave",
        dev(raw_flags=0x1843, master_index=4),
        ROUTED,
        AUTO,
        (False, "excluded flag set (mask=0x808, flags=0x1843)"),
    ),
    # 6. master
    ("6 bridge port", dev(master_index=4), ROUTED, AUTO, (False, "bridged or bonded to ifindex 4")),
    # 8. excluded prefixes (7 is tested below with the kernel flag)
    ("8 cilium_", dev(name="cilium_host"), ROUTED, AUTO, (False, 'excluded prefix "cilium_"')),
    (
        "8 lo prefix without loopback flag",
        dev(name="lonely"),
        ROUTED,
        AUTO,
        (False, 'excluded prefix "lo"'),
    ),
    ("8 lxc", dev(name="lxc1234"), ROUTED, AUTO, (False, 'excluded prefix "lxc"')),
    ("8 cni", dev(name="cni0"), ROUTED, AUTO, (False, 'excluded prefix "cni"')),
    ("8 docker", dev(name="docker0"), ROUTED, AUTO, (False, 'excluded prefix "docker"')),
    (
        "8 before the bridge rule",
        dev(name="docker0", type="bridge"),
        ROUTED,
        AUTO,
        (False, 'excluded prefix "docker"'),
    ),
    # 9. veth without default route
    (
        "9 veth without default route",
        dev(type="veth"),
        RouteFacts(has_default_route=False, has_global_unicast_route=True),
        AUTO,
        (False, "veth without default route"),
    ),
    ("9 veth with default route", dev(type="veth"), ROUTED, AUTO, (True, "")),
    (
        "9 not applied with a filter (force-device-detection)",
        dev(name="veth9", type="veth"),
        RouteFacts(has_global_unicast_route=True),
        opts("eth0", force=True),
        (True, ""),
    ),
    (
        "9 veth with default route but no global route",
        dev(type="veth"),
        RouteFacts(has_default_route=True),
        AUTO,
        (False, "no global unicast routes"),
    ),
    # 10. bridge-like
    (
        "10 bridge",
        dev(name="br0", type="bridge"),
        ROUTED,
        AUTO,
        (False, "bridge-like device, use --devices to override"),
    ),
    (
        "10 openvswitch",
        dev(name="ovs-system", type="openvswitch"),
        ROUTED,
        AUTO,
        (False, "bridge-like device, use --devices to override"),
    ),
    # 11. global unicast routes
    (
        "11 no global unicast routes",
        dev(),
        RouteFacts(has_default_route=True),
        AUTO,
        (False, "no global unicast routes"),
    ),
    ("11 bond itself is fine", dev(name="bond0", type="bond"), ROUTED, AUTO, (True, "")),
    # 12. selected
    ("12 plain uplink", dev(), RouteFacts(has_global_unicast_route=True), AUTO, (True, "")),
    ("12 vxlan with routes", dev(name="vxlan0", type="vxlan"), ROUTED, AUTO, (True, "")),
]


@pytest.mark.parametrize(
    ("device", "routes", "options", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_selection_rules_in_order(
    device: Device, routes: RouteFacts, options: DevicesOptions, expected: tuple[bool, str]
) -> None:
    assert select_device(device, routes, options) == expected


def test_rule_7_l3_device_needs_kernel_5_8() -> None:
    l3 = dev(name="wg0", type="wireguard", hw_addr="")
    assert select_device(l3, ROUTED, AUTO, l3_devices_supported=False) == (
        False,
        "L3 device, kernel too old, >= 5.8 required",
    )
    assert select_device(l3, ROUTED, AUTO, l3_devices_supported=True) == (True, "")
    # A device with a MAC is unaffected by the kernel.
    assert select_device(dev(), ROUTED, AUTO, l3_devices_supported=False) == (True, "")
    # The L3 check (rule 7) comes after the master check (6), before the excluded prefixes (8).
    enslaved = dataclasses.replace(l3, master_index=2)
    assert select_device(enslaved, ROUTED, AUTO, l3_devices_supported=False)[1] == (
        "bridged or bonded to ifindex 2"
    )
    prefixed = dataclasses.replace(l3, name="lxc0")
    assert select_device(prefixed, ROUTED, AUTO, l3_devices_supported=False)[1] == (
        "L3 device, kernel too old, >= 5.8 required"
    )


@pytest.mark.parametrize(
    ("release", "supported"),
    [
        ("6.18.44-fc-v509", True),
        ("5.8.0", True),
        ("5.7.19-generic", False),
        ("4.19.0", False),
        ("weird", True),
    ],
)
def test_kernel_version_check(release: str, supported: bool) -> None:
    assert kernel_supports_l3_devices(release) is supported


@pytest.mark.parametrize(
    ("addr", "is_global"),
    [
        ("198.51.100.0", True),  # documentation and private ranges count, as in Go
        ("10.0.0.1", True),
        ("2001:db8::", True),
        ("0.0.0.0", False),
        ("::", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("169.254.1.1", False),
        ("fe80::", False),
        ("224.0.0.1", False),
        ("ff00::", False),
        ("255.255.255.255", False),
        ("::ffff:169.254.0.1", False),
        ("::ffff:198.51.100.1", True),
    ],
)
def test_global_unicast_follows_go(addr: str, is_global: bool) -> None:
    assert is_global_unicast(addr) is is_global
