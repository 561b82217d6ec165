"""The devices controller: the node's links, addresses and routes from netlink, written to the
``devices`` table with the reference's selection rules.

    netlink (pyroute2_source) --updates--> controller (a job: batching, relist on error)
        --> table_sync (NetState in memory + select_device) --> statedb table ``devices``

Modules: ``options`` (the ``devices`` / ``force-device-detection`` options), ``selection`` (the
rules, a pure function), ``source`` (typed updates and the source interface), ``state`` (the
in-memory view), ``table_sync`` (one transaction per listing or batch), ``controller`` (the
job), ``pyroute2_source`` (the real netlink source).

Use::

    db = Database.open(path, [DEVICES, ...])
    ctl = DevicesController(db, DevicesOptions(devices=("eth+",)))
    ctl.start(); ctl.wait_initialized(5.0)
    ...
    ctl.stop()
"""

from agent.devices.controller import DevicesController, DevicesControllerConfig
from agent.devices.options import DevicesOptions, devices_option_from_string
from agent.devices.selection import RouteFacts, select_device
from agent.devices.source import (
    AddrUpdate,
    LinkUpdate,
    NetlinkError,
    NetlinkSource,
    RouteUpdate,
    Update,
)

__all__ = [
    "AddrUpdate",
    "DevicesController",
    "DevicesControllerConfig",
    "DevicesOptions",
    "LinkUpdate",
    "NetlinkError",
    "NetlinkSource",
    "RouteFacts",
    "RouteUpdate",
    "Update",
    "devices_option_from_string",
    "select_device",
]
