"""The devices controller against a real kernel, in throwaway namespaces (documentation
addresses only: 198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable

from .conftest import Agent, ip


def link_info(ns: str, name: str) -> dict[str, object]:
    out = json.loads(ip(ns, "-j", "link", "show", "dev", name))
    assert isinstance(out, list)
    info: dict[str, object] = out[0]
    return info


def addrs(rows: dict, name: str) -> list[str]:  # type: ignore[type-arg]
    return [a.addr for a in rows[name].addresses] if name in rows else []


def test_rows_for_every_link(veth_ns: str, start_agent: Callable[..., Agent]) -> None:
    ns = veth_ns
    ip(ns, "route", "add", "default", "via", "198.51.100.254", "dev", "va")
    agent = start_agent(ns)
    rows = agent.wait_for("initial listing", lambda r: {"lo", "va", "vb"} <= set(r))
    va, vb, lo = rows["va"], rows["vb"], rows["lo"]
    info = link_info(ns, "va")
    assert va.ifindex == info["ifindex"]
    assert va.hw_addr == info["address"] and va.hw_addr == va.hw_addr.lower()
    assert (va.type, va.mtu) == ("veth", 1500)
    assert va.flags.startswith("up|broadcast|multicast")
    assert va.addresses[0].addr == "198.51.100.1" and va.addresses[0].scope == 0
    assert (va.selected, va.not_selected_reason) == (True, "")
    # vb has only its IPv6 link-local address (or none yet, if DAD has not run).
    assert not vb.selected
    assert vb.not_selected_reason in ("device has no addresses", "veth without default route")
    assert lo.hw_addr == "" and lo.type == "device"
    assert lo.not_selected_reason.startswith("excluded flag set (mask=0x808, flags=0x")
    assert "127.0.0.1" in addrs(rows, "lo")
    agent.wait_for(
        "Devices changed logged", lambda r: "Devices changed devices=[va]" in agent.log()
    )


def test_deleting_and_readding_an_interface(
    veth_ns: str, start_agent: Callable[..., Agent]
) -> None:
    ns = veth_ns
    agent = start_agent(ns)
    first = agent.wait_for("initial listing", lambda r: {"va", "vb"} <= set(r))
    ip(ns, "link", "del", "va")  # takes its peer vb with it
    agent.wait_for("rows removed", lambda r: not {"va", "vb"} & set(r))
    ip(ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
    ip(ns, "addr", "add", "203.0.113.1/24", "dev", "va")
    ip(ns, "link", "set", "va", "up")
    rows = agent.wait_for("re-added", lambda r: "va" in r and "203.0.113.1" in addrs(r, "va"))
    assert rows["va"].ifindex != first["va"].ifindex
    assert "198.51.100.1" not in addrs(rows, "va")
    assert rows["va"].not_selected_reason == "veth without default route"


def test_changing_addresses(veth_ns: str, start_agent: Callable[..., Agent]) -> None:
    ns = veth_ns
    agent = start_agent(ns)
    agent.wait_for("initial listing", lambda r: "198.51.100.1" in addrs(r, "va"))
    ip(ns, "addr", "add", "203.0.113.7/24", "dev", "va")
    ip(ns, "addr", "add", "198.51.100.2/24", "dev", "va")  # a secondary of 198.51.100.1/24
    rows = agent.wait_for(
        "addresses added",
        lambda r: {"203.0.113.7", "198.51.100.2"} <= set(addrs(r, "va")),
    )
    secondary = {a.addr: a.secondary for a in rows["va"].addresses}
    assert secondary["198.51.100.2"] is True and secondary["198.51.100.1"] is False
    ip(ns, "addr", "del", "198.51.100.1/24", "dev", "va")
    ip(ns, "addr", "add", "192.0.2.9/24", "dev", "vb")
    rows = agent.wait_for(
        "address removed",
        lambda r: "198.51.100.1" not in addrs(r, "va") and "192.0.2.9" in addrs(r, "vb"),
    )
    assert "203.0.113.7" in addrs(rows, "va")


def test_a_default_route_makes_a_veth_selected(
    veth_ns: str, start_agent: Callable[..., Agent]
) -> None:
    ns = veth_ns
    agent = start_agent(ns)
    rows = agent.wait_for("initial listing", lambda r: "va" in r)
    assert rows["va"].not_selected_reason == "veth without default route"
    ip(ns, "route", "add", "default", "via", "198.51.100.254", "dev", "va")
    agent.wait_for("selected", lambda r: r["va"].selected)
    ip(ns, "route", "del", "default", "via", "198.51.100.254", "dev", "va")
    rows = agent.wait_for("unselected", lambda r: not r["va"].selected)
    assert rows["va"].not_selected_reason == "veth without default route"
    # The kernel drops the default route silently when the link goes down; after coming back
    # up the veth must not be selected on the strength of a route that no longer exists.
    ip(ns, "route", "add", "default", "via", "198.51.100.254", "dev", "va")
    agent.wait_for("selected again", lambda r: r["va"].selected)
    ip(ns, "link", "set", "va", "down")
    agent.wait_for("down", lambda r: r["va"].not_selected_reason.startswith("missing required"))
    ip(ns, "link", "set", "va", "up")
    rows = agent.wait_for("up", lambda r: not r["va"].flags.startswith("0"))
    rows = agent.wait_for(
        "up without default route",
        lambda r: r["va"].not_selected_reason == "veth without default route",
    )


def test_user_filter_selects_a_named_veth(veth_ns: str, start_agent: Callable[..., Agent]) -> None:
    ns = veth_ns
    ip(ns, "addr", "add", "192.0.2.1/24", "dev", "vb")
    agent = start_agent(ns, "--devices", "vb")
    rows = agent.wait_for("initial listing", lambda r: {"va", "vb"} <= set(r))
    assert rows["vb"].selected
    assert rows["va"].not_selected_reason == "not matching user filter [vb]"


def test_overrun_relists_and_the_table_catches_up(
    veth_ns: str, start_agent: Callable[..., Agent]
) -> None:
    """A small receive buffer and a burst while the agent is stalled: the kernel drops events
    and reports ENOBUFS, the controller resubscribes and relists, and the table ends up
    complete anyway."""
    ns = veth_ns
    agent = start_agent(ns, "--rcvbuf", "4096")
    agent.wait_for("initial listing", lambda r: "va" in r)
    script = "".join(f"address add 203.0.113.{i}/32 dev va\n" for i in range(1, 201))
    agent.proc.send_signal(signal.SIGSTOP)  # `ip netns exec` execs python: same pid
    try:
        subprocess.run(
            ["ip", "-n", ns, "-batch", "-"],
            input=script,
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    rows = agent.wait_for("all addresses", lambda r: len(addrs(r, "va")) >= 201)
    assert "203.0.113.200" in addrs(rows, "va")
    assert "netlink error" in agent.log()


LEAK_CHECK = """
import os, threading
from agent.devices.controller import DevicesController, DevicesControllerConfig
from statedb import Database
from common.tables.devices import DEVICES

def fds():
    return len(os.listdir("/proc/self/fd"))

db = Database.open(None, [DEVICES])
cfg = DevicesControllerConfig(poll_interval=0.05)
def cycle():
    ctl = DevicesController(db, config=cfg)
    ctl.start()
    assert ctl.wait_initialized(5.0)
    ctl.stop()
cycle()
before = (fds(), threading.active_count())
for _ in range(10):
    cycle()
print(before, (fds(), threading.active_count()))
"""


def test_start_stop_leaks_no_sockets_or_threads(veth_ns: str) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", veth_ns, sys.executable, "-c", LEAK_CHECK],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    before, after = out.rsplit(" (", 1)
    assert before == "(" + after, out
