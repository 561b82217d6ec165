"""Table ``devices``: the node's network devices and whether l2announcer uses each one.

Filled by the devices controller from netlink; ``selected`` follows the selection rules of the
reference (see docs/statedb.md). Primary key: the ifindex. Indexes: ``name``, ``selected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statedb.table import Table, json_codec

# IFF_* bits shown in the Flags column, in the order Go's net.Flags prints them.
_FLAG_NAMES = (
    (0x1, "up"),
    (0x2, "broadcast"),
    (0x8, "loopback"),
    (0x10, "pointtopoint"),
    (0x1000, "multicast"),
    (0x40, "running"),
)


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    addr: str  # as printed by ipaddress: "198.51.100.2", "fe80::1"
    secondary: bool = False
    scope: int = 0  # RT_SCOPE_*: 0 universe, 253 link, 254 host


@dataclass(frozen=True, slots=True)
class Device:
    ifindex: int
    name: str
    type: str = "device"  # netlink kind: device, veth, bridge, bond, vxlan, ...
    mtu: int = 1500
    hw_addr: str = ""  # lower-case colon form; empty for L3 devices and all-zero MACs
    raw_flags: int = 0  # IFF_* bits
    master_index: int = 0  # ifindex of the bridge or bond this device is enslaved to
    addresses: tuple[DeviceAddress, ...] = ()
    selected: bool = False
    not_selected_reason: str = ""

    @property
    def flags(self) -> str:
        names = [n for bit, n in _FLAG_NAMES if self.raw_flags & bit]
        return "|".join(names) if names else "0"


def _addresses_to_json(addrs: tuple[DeviceAddress, ...]) -> list[dict[str, Any]]:
    return [{"addr": a.addr, "secondary": a.secondary, "scope": a.scope} for a in addrs]


def _addresses_from_json(items: list[dict[str, Any]]) -> tuple[DeviceAddress, ...]:
    return tuple(DeviceAddress(i["addr"], bool(i["secondary"]), int(i["scope"])) for i in items)


def _row(d: Device) -> tuple[str, ...]:
    return (
        d.name,
        str(d.ifindex),
        "true" if d.selected else "false",
        d.type,
        str(d.mtu),
        d.hw_addr,
        d.flags,
        ", ".join(a.addr for a in d.addresses),
    )


def _to_json(d: Device) -> dict[str, Any]:
    return {
        "Index": d.ifindex,
        "MTU": d.mtu,
        "Name": d.name,
        "HardwareAddr": d.hw_addr,
        "Flags": d.flags,
        "Addrs": [
            {"Addr": a.addr, "Secondary": a.secondary, "Scope": a.scope} for a in d.addresses
        ],
        "RawFlags": d.raw_flags,
        "Type": d.type,
        "MasterIndex": d.master_index,
        "Selected": d.selected,
        "NotSelectedReason": d.not_selected_reason,
    }


DEVICES: Table[Device] = Table(
    name="devices",
    sql_name="devices",
    row_type=Device,
    primary_key=("ifindex",),
    indexes={"name": ("name",), "selected": ("selected",)},
    codecs={"addresses": json_codec("addresses", _addresses_to_json, _addresses_from_json)},
    header=("Name", "Index", "Selected", "Type", "MTU", "HWAddr", "Flags", "Addresses"),
    format_row=_row,
    to_json=_to_json,
    doc="Network devices of this node and whether each is selected for announcements.",
)

DEVICES_BY_NAME = DEVICES.index("name")
DEVICES_SELECTED = DEVICES.index("selected")

__all__ = ["DEVICES", "DEVICES_BY_NAME", "DEVICES_SELECTED", "Device", "DeviceAddress"]
