"""Self-fencing in the lab, on the real control plane: ``ip link set eth0 down`` in the holder's
namespace, or its switch port going down (the LAN end of its link: eth0 stays up, without
carrier, and stays selected). The agents reach kube-apiserver over their management link (mgmt0), so the holder
still can, and does, hand the lease over: its link fence writes an ``l2-fence`` row, the fence
gate refuses the Service (``interface-down`` in ``l2-contest``), the lease is released and
another node answers. The client's ARP watcher sees one MAC per answer, never two at once, and
after ``ip link set eth0 up`` (and the default route back, as a network manager restores it) the
Service stays where it went: the old holder only contests again after its hold-down, as a
standby.

Also: the holder reaches its own VIP (the VIP is local on every lab node, as kube-proxy makes it;
the node's own traffic never needs ARP, which is why the responder does not have to answer the
node itself).

The times are printed (docs/benchmarks.md, "What a client sees"), not asserted.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from agent.fence.links import LINK_HOLD_DOWN
from lab import lab, netns
from lab.inventory import LabState, node_mac
from tests.e2e import test_lab
from tests.e2e.lab_extras import arpwatch, holder_of, l2lab, set_uplink, summary, until
from tests.e2e.test_lab import up

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(180)

SERVICE = "service-1"


def contest(state: LabState, node: str) -> dict[str, str]:
    """The node's ``l2-contest`` row of the Service, as ``l2dbg -o json`` prints it."""
    out = lab.run_in(state, node, ["l2dbg", "statedb", "l2-contest", "-o", "json"])
    rows = [r for r in json.loads(out) if r["Name"] == SERVICE]
    return rows[0] if rows else {}


def fences(state: LabState, node: str) -> list[dict[str, str]]:
    out = lab.run_in(state, node, ["l2dbg", "statedb", "l2-fence", "-o", "json"])
    rows: list[dict[str, str]] = json.loads(out)
    return rows


@pytest.mark.parametrize("how", ["down", "carrier"], ids=["link-down", "no-carrier"])
def test_link_down_hands_the_service_over_and_it_does_not_flap_back(
    lab_name: str, how: str
) -> None:
    state = up(lab_name, nodes=3, services=1)
    vip = state.vips()[SERVICE]
    old = holder_of(state, SERVICE)
    old_mac = node_mac(state.node_states[old].index)
    # Long enough for: 1 s before, the move, 3 s down, the hold-down after the link is back,
    # and 3 s more in which the Service must stay where it went.
    watch = 1.0 + 3.0 + LINK_HOLD_DOWN + 3.0 + 2.0
    watcher = arpwatch(state, vip, duration=watch)
    time.sleep(1.0)
    down_at = time.monotonic()
    set_uplink(state, old, False, how)
    holders: list[str] = []  # as read, each time: a second read could fail (kubectl)

    def moved_away() -> bool:
        holders.append(holder_of(state, SERVICE))
        return holders[-1] not in ("", old)

    moved = until(moved_away, "another holder", 15)
    new = holders[-1]
    print(f"{how}: link down -> lease held by {new}: {moved:.3f}s")

    # The old holder says why it let go, and still renews nothing for it.
    refused = contest(state, old)
    assert (refused.get("State"), refused.get("Reason")) == ("refused", "interface-down"), refused
    (fence,) = fences(state, old)
    assert (fence["Interface"], fence["Kind"], fence["Reason"]) == (
        "eth0",
        "link",
        "interface-down",
    )
    print(l2lab(lab_name, "exec", old, "--", "l2dbg", "statedb", "l2-fence"))
    print(l2lab(lab_name, "exec", old, "--", "l2dbg", "statedb", "l2-contest"))
    time.sleep(max(0.0, down_at + 3.0 - time.monotonic()))

    set_uplink(state, old, True, how)
    up_at = time.monotonic()
    held = until(lambda: fences(state, old) == [], "the hold-down ends", LINK_HOLD_DOWN + 5)
    print(f"link up -> fence row gone: {held:.3f}s (hold-down {LINK_HOLD_DOWN:g}s)")
    assert held >= LINK_HOLD_DOWN - 0.5, "the fence went before its hold-down ended"

    # No longer fenced: it stands by, or, when placement puts another node in line after the
    # new holder, leaves the lease to them (the Service does not come back either way).
    def unfenced() -> bool:
        row = contest(state, old)
        return row.get("State") == "standby" or row.get("Reason") == "placed-elsewhere"

    standby = until(unfenced, "the old holder stands by", 5)
    print(f"link up -> old holder no longer fenced: {time.monotonic() - up_at:.3f}s")
    assert standby >= 0
    assert contest(state, old).get("Holder") == new

    seen = summary(watcher)
    print(f"{how}: client's view: {seen}")
    assert seen["double"] == 0, seen
    # One move, none back: the old holder's MAC, then the new holder's, until the end.
    assert seen["macs"] == [old_mac, node_mac(state.node_states[new].index)], seen
    assert holder_of(state, SERVICE) == new


def test_the_holder_reaches_its_own_vip(lab_name: str) -> None:
    state = up(lab_name, nodes=2, services=1)
    vip = state.vips()[SERVICE]
    holder = holder_of(state, SERVICE)
    # The VIP is a local address of every node (on lo, as kube-proxy's IPVS mode puts it on
    # kube-ipvs0; in iptables mode its OUTPUT rules catch it the same way), so the node's own
    # traffic to it is delivered inside the node: no ARP, which no responder on the wire sees.
    route = lab.run_in(state, holder, ["ip", "route", "get", vip])
    print(route)
    assert re.match(rf"local {re.escape(vip)} dev lo ", route), route
    answer = lab.run_in(state, holder, ["curl", "-s", "-m", "2", f"http://{vip}/"]).strip()
    assert answer == f"{holder}: hello from {vip}", answer
    # And with its LAN link down it still does (it is fenced, the Service moves away).
    netns.ip("link", "set", "eth0", "down", netns=state.netns_of(holder))
    until(lambda: holder_of(state, SERVICE) not in ("", holder), "another holder", 15)
    answer = lab.run_in(state, holder, ["curl", "-s", "-m", "2", f"http://{vip}/"]).strip()
    assert answer == f"{holder}: hello from {vip}", answer
