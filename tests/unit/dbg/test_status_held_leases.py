"""``l2dbg status`` tells a held lease that announces something from one that announces nothing."""

from __future__ import annotations

from pathlib import Path

from agent.config import resolve
from agent.config_table import write_config
from common.tables import CATALOGUE, HEALTH, L2_ANNOUNCE, LEASES
from common.tables.health import Health
from common.tables.l2_announce import L2AnnounceEntry, Origin
from common.tables.leases import Lease
from statedb import Database, Status, StatusKind
from tests.unit.dbg.fixtures import invoke

RED = "cilium-l2announce-default-service-red"
WLAN = "cilium-l2announce-default-wlan-only"
WHY = (
    "OK, 2 service(s) selected, leading 2; nothing to announce for 1 held lease(s), e.g. "
    "default/wlan-only: policy policy1: its interfaces match none of this node's selected "
    "devices (eth0)"
)


def test_a_held_lease_with_nothing_announced_says_so(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "statedb.sqlite", CATALOGUE.values())
    r = resolve({"enable-l2-announcements": "true"}, {"NODE_NAME": "node2"})
    write_config(db, r.config, r.sources)
    with db.write_txn(HEALTH, L2_ANNOUNCE, LEASES) as txn:
        txn.upsert(LEASES, Lease(RED, "node2", 15))
        txn.upsert(LEASES, Lease(WLAN, "node2", 15))
        txn.upsert(HEALTH, Health("l2-announcer", "OK", WHY.removeprefix("OK, "), 1.0))
        for iface in ("eth0", "eth1"):
            txn.upsert(
                L2_ANNOUNCE,
                L2AnnounceEntry(
                    "198.51.100.10",
                    iface,
                    (Origin("default", "service-red"),),
                    Status(StatusKind.DONE, "", 1.0),
                ),
            )
    db.close()
    result = invoke(["status", "--state-dir", str(tmp_path)])
    assert result.code == 0, result.stdout
    assert (
        "Leases held:          2\n"
        f"  {RED}   announcing 2 (IP, interface) pair(s)\n"
        f"  {WLAN}     nothing announced (the l2-announcer module below says why)\n"
    ) in result.stdout
    assert "default/wlan-only: policy policy1: its interfaces match none" in result.stdout
