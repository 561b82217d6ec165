"""Which devices l2announcer uses: the selection rules of the reference, as a pure function.

``select_device`` looks only at the device row and two facts about its routes, so every rule can
be tested with a table of inputs, and the controller stays the only place that touches netlink.
The rules run in the reference's order and the first that applies gives the reason; the reason
strings are the reference's, because operators search for them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from agent.devices.options import DevicesOptions
from common.tables.devices import Device

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_SLAVE = 0x800

REQUIRED_FLAGS = IFF_UP
EXCLUDED_FLAGS = IFF_SLAVE | IFF_LOOPBACK

# Names of devices that belong to container networking or the host itself, never uplinks.
EXCLUDED_PREFIXES = ("cilium_", "lo", "lxc", "cni", "docker")

# The responder needs bpf_skb_change_head() to serve L3 devices (no MAC), added in Linux 5.8.
_L3_MIN_KERNEL = (5, 8)


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What selection needs to know about a device's routes.

    has_default_route: a 0.0.0.0/0 or ::/0 route in the main table (254) via this device.
    has_global_unicast_route: a route via this device, in any table, whose destination address
        is global unicast in Go's sense (not unspecified, loopback, multicast, link-local or the
        IPv4 broadcast; private and documentation ranges do count).
    """

    has_default_route: bool = False
    has_global_unicast_route: bool = False


def select_device(
    device: Device,
    routes: RouteFacts,
    options: DevicesOptions,
    *,
    l3_devices_supported: bool = True,
) -> tuple[bool, str]:
    """(selected, reason); the reason is empty when selected. Rules in the reference's order."""
    if not device.name:
        return False, "link not seen yet"
    if not device.addresses:
        return False, "device has no addresses"
    if device.raw_flags & REQUIRED_FLAGS == 0:
        return False, (
            f"missing required flag (mask={REQUIRED_FLAGS:#x}, flags={device.raw_flags:#x})"
        )
    if options.has_filter:
        if options.matches(device.name):
            return True, ""
        if not options.force_device_detection:
            return False, f"not matching user filter {options.filter_text()}"
    if device.raw_flags & EXCLUDED_FLAGS:
        return False, f"excluded flag set (mask={EXCLUDED_FLAGS:#x}, flags={device.raw_flags:#x})"
    if device.master_index != 0:
        return False, f"bridged or bonded to ifindex {device.master_index}"
    if not device.hw_addr and not l3_devices_supported:
        return False, "L3 device, kernel too old, >= 5.8 required"
    for prefix in EXCLUDED_PREFIXES:
        if device.name.startswith(prefix):
            return False, f'excluded prefix "{prefix}"'
    if device.type == "veth":
        # kind and docker-in-docker give the node a veth as its uplink, recognisable by its
        # default route; other veths are container plumbing. A user filter overrides this.
        if not options.has_filter and not routes.has_default_route:
            return False, "veth without default route"
    elif device.type in ("bridge", "openvswitch"):
        return False, "bridge-like device, use --devices to override"
    if not routes.has_global_unicast_route:
        return False, "no global unicast routes"
    return True, ""


def is_global_unicast(addr: str) -> bool:
    """Go's netip.Addr.IsGlobalUnicast, which the reference uses (Python's is_global differs:
    it rejects private and documentation ranges, which are exactly what on-prem nodes use)."""
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return False
    return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local)


def kernel_supports_l3_devices(release: str | None = None) -> bool:
    """Whether the running kernel (``uname -r``) is at least 5.8; unknown formats count as yes,
    since every kernel this project supports is newer and a wrong 'no' would drop devices."""
    text = os.uname().release if release is None else release
    m = re.match(r"(\d+)\.(\d+)", text)
    if m is None:
        return True
    return (int(m.group(1)), int(m.group(2))) >= _L3_MIN_KERNEL


__all__ = [
    "EXCLUDED_FLAGS",
    "EXCLUDED_PREFIXES",
    "REQUIRED_FLAGS",
    "RouteFacts",
    "is_global_unicast",
    "kernel_supports_l3_devices",
    "select_device",
]
