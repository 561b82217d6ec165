"""The l2-responder operations with a fake map, attacher and GARP sender."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.responder.ops import ResponderOps
from agent.runtime.clock import RealClock
from bpf.garp import GarpError
from bpf.mcast import GroupError
from common.tables import DEVICES, L2_ANNOUNCE
from common.tables.devices import Device
from common.tables.l2_announce import L2AnnounceEntry
from statedb import Database, StatusKind
from statedb.reconciler import Config
from tests.reconciler_job import JobReconciler


class FakeMap:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, int], int] = {}

    def add_if_missing(self, ip: str, ifindex: int) -> bool:
        if (ip, ifindex) in self.counters:
            return False
        self.counters[(ip, ifindex)] = 0
        return True

    def delete(self, ip: str, ifindex: int) -> bool:
        return self.counters.pop((ip, ifindex), None) is not None

    def keys(self) -> list[tuple[str, int]]:
        return sorted(self.counters)


class FakeAttacher:
    def __init__(self, already: list[int] | None = None) -> None:
        self.on = set(already or [])
        self.log: list[str] = []

    def attach(self, ifindex: int, mac: bytes | None = None) -> None:
        self.on.add(ifindex)
        self.log.append(f"attach {ifindex} {mac.hex() if mac else None}")

    def detach(self, ifindex: int) -> bool:
        self.on.discard(ifindex)
        self.log.append(f"detach {ifindex}")
        return True

    def attached(self) -> list[int]:
        return sorted(self.on)


class FakeGarp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.cancelled: list[tuple[str, int]] = []
        self.fail = 0

    def announce(self, vip: str, ifindex: int) -> None:
        if self.fail:
            self.fail -= 1
            raise GarpError("failed to send ARP packet: Network is down")
        self.sent.append((vip, ifindex))

    def cancel(self, vip: str, ifindex: int) -> None:
        self.cancelled.append((vip, ifindex))


class FakeGroups:
    def __init__(self) -> None:
        self.held: dict[tuple[str, int], int] = {}
        self.fail = ""

    def join(self, vip: str, ifindex: int) -> bool:
        if self.fail:
            raise GroupError(0, self.fail)
        self.held[(vip, ifindex)] = 1
        return True

    def leave(self, vip: str, ifindex: int) -> bool:
        return self.held.pop((vip, ifindex), None) is not None


class Rig:
    def __init__(self, existing: dict[tuple[str, int], int] | None = None) -> None:
        self.db = Database.open(None, [DEVICES, L2_ANNOUNCE])
        with self.db.write_txn(DEVICES) as txn:
            txn.upsert(DEVICES, Device(2, "eth0", hw_addr="02:00:00:00:00:02", selected=True))
            txn.upsert(DEVICES, Device(3, "eth1", hw_addr="02:00:00:00:00:03", selected=True))
        self.map = FakeMap()
        self.map.counters.update(existing or {})
        self.attacher = FakeAttacher()
        self.garp = FakeGarp()
        self.groups = FakeGroups()
        self.ops = ResponderOps(self.db, self.map, self.attacher, self.garp, self.groups)


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.db.close()


E = L2AnnounceEntry


def test_new_key_is_added_attached_and_announced_once(rig: Rig) -> None:
    rig.ops.update(E("198.51.100.10", "eth0"))
    rig.ops.update(E("198.51.100.10", "eth0"))
    assert rig.map.keys() == [("198.51.100.10", 2)]
    assert rig.attacher.log == ["attach 2 020000000002"]
    assert rig.garp.sent == [("198.51.100.10", 2)]


def test_a_key_already_in_the_map_keeps_its_counter_and_is_not_announced_again() -> None:
    r = Rig(existing={("198.51.100.10", 2): 41})
    r.ops.update(E("198.51.100.10", "eth0"))
    assert r.map.counters == {("198.51.100.10", 2): 41}
    assert r.garp.sent == []
    r.db.close()


def test_failed_garp_keeps_the_key_and_is_sent_again_on_retry(rig: Rig) -> None:
    rig.garp.fail = 1
    with pytest.raises(RuntimeError, match=r"^garp 198\.51\.100\.10@2: failed to send ARP packet"):
        rig.ops.update(E("198.51.100.10", "eth0"))
    assert rig.map.keys() == [("198.51.100.10", 2)], "the key does not wait for the GARP"
    rig.ops.update(E("198.51.100.10", "eth0"))
    assert rig.garp.sent == [("198.51.100.10", 2)]
    rig.ops.update(E("198.51.100.10", "eth0"))
    assert rig.garp.sent == [("198.51.100.10", 2)], "sent once it worked, not again"


def test_an_ipv6_key_is_added_its_group_joined_and_announced_once(rig: Rig) -> None:
    rig.ops.update(E("2001:db8::10", "eth0"))
    rig.ops.update(E("2001:db8::10", "eth0"))
    assert rig.map.keys() == [("2001:db8::10", 2)]
    assert rig.groups.held == {("2001:db8::10", 2): 1}
    assert rig.garp.sent == [("2001:db8::10", 2)]
    rig.ops.delete(E("2001:db8::10", "eth0"))
    assert rig.groups.held == {} and rig.map.keys() == []
    assert rig.garp.cancelled == [("2001:db8::10", 2)]


def test_a_restarted_agent_joins_again_for_a_key_it_adopted_without_announcing() -> None:
    r = Rig(existing={("2001:db8::10", 2): 3})
    r.ops.update(E("2001:db8::10", "eth0"))
    assert r.groups.held == {("2001:db8::10", 2): 1}
    assert r.garp.sent == []
    r.db.close()


def test_a_refused_join_keeps_the_key_and_is_a_retried_error(rig: Rig) -> None:
    rig.groups.fail = "join ff02::1:ff00:10 on eth0: No buffer space available"
    with pytest.raises(RuntimeError, match=r"^join ff02::1:ff00:10 on eth0: No buffer space"):
        rig.ops.update(E("2001:db8::10", "eth0"))
    assert rig.map.keys() == [("2001:db8::10", 2)]
    rig.groups.fail = ""
    rig.ops.update(E("2001:db8::10", "eth0"))
    assert rig.groups.held == {("2001:db8::10", 2): 1}
    assert rig.garp.sent == [("2001:db8::10", 2)]


def test_prune_leaves_the_group_of_a_stale_ipv6_key() -> None:
    r = Rig(existing={("2001:db8::10", 2): 1, ("2001:db8::11", 2): 1})
    r.ops.update(E("2001:db8::11", "eth0"))
    r.groups.held[("2001:db8::10", 2)] = 1
    r.ops.prune([E("2001:db8::11", "eth0")])
    assert r.map.keys() == [("2001:db8::11", 2)]
    assert r.groups.held == {("2001:db8::11", 2): 1}
    r.db.close()


def test_unknown_interface_is_a_retried_error(rig: Rig) -> None:
    with pytest.raises(LookupError, match="link index: no device named 'eth9'"):
        rig.ops.update(E("198.51.100.10", "eth9"))


def test_delete_removes_cancels_and_detaches_an_idle_interface(rig: Rig) -> None:
    rig.ops.update(E("198.51.100.10", "eth0"))
    rig.ops.update(E("198.51.100.11", "eth0"))
    rig.ops.delete(E("198.51.100.10", "eth0"))
    assert rig.map.keys() == [("198.51.100.11", 2)]
    assert rig.garp.cancelled == [("198.51.100.10", 2)]
    assert 2 in rig.attacher.on
    rig.ops.delete(E("198.51.100.11", "eth0"))
    assert rig.attacher.on == set()
    rig.ops.delete(E("198.51.100.11", "eth0"))  # missing key: fine


def test_prune_removes_only_keys_no_row_wants() -> None:
    r = Rig(existing={("198.51.100.10", 2): 5, ("198.51.100.99", 3): 7})
    r.attacher.on = {2, 3}
    r.ops.prune([E("198.51.100.10", "eth0")])
    assert r.map.counters == {("198.51.100.10", 2): 5}
    assert r.attacher.on == {2}
    r.db.close()


def test_a_previous_agents_filter_gets_this_agents_program_on_first_update() -> None:
    # After an upgrade the filter left by the previous agent may run an older program: the first
    # update on its interface attaches (tc replace, atomic) this agent's program.
    r = Rig(existing={("198.51.100.10", 2): 5})
    r.attacher.on = {2}
    r.ops.update(E("198.51.100.10", "eth0"))
    r.ops.update(E("198.51.100.11", "eth0"))
    assert r.attacher.log == ["attach 2 020000000002"]
    assert r.map.counters[("198.51.100.10", 2)] == 5, "the counter carries over"
    assert r.garp.sent == [("198.51.100.11", 2)], "only the new key is announced"
    r.db.close()


def test_through_the_reconciler_garp_failure_is_the_rows_status_until_it_heals(rig: Rig) -> None:
    rig.garp.fail = 1
    rec = JobReconciler(
        rig.db, L2_ANNOUNCE, rig.ops, Config(retry_min=0.01), clock=RealClock(), name="l2-responder"
    )
    rec.start()
    try:
        with rig.db.write_txn(L2_ANNOUNCE) as txn:
            txn.register_initializer(L2_ANNOUNCE, "t")
            txn.upsert(L2_ANNOUNCE, E("198.51.100.10", "eth0"))
            txn.initializer_done(L2_ANNOUNCE, "t")
        assert rec.wait_until_reconciled(5)
        with rig.db.read_txn() as r:
            (row,) = r.all(L2_ANNOUNCE)
        assert row.status.kind is StatusKind.DONE
        assert rig.garp.sent == [("198.51.100.10", 2)]
        assert str(rec.health()) == "OK, 1 object(s)"
    finally:
        rec.stop(5)


def test_delete_after_the_interface_changed_and_vanished_still_removes_its_key(rig: Rig) -> None:
    # eth1 appears, its key is added, the device watcher sees it change (forget_interfaces),
    # then eth1 is deleted before the row is reconciled again: the row's delete must still
    # remove the key of the interface that is gone, not leave it to a prune minutes later.
    rig.ops.update(E("198.51.100.10", "eth0"))
    rig.ops.update(E("198.51.100.10", "eth1"))
    rig.ops.forget_interfaces({"eth1"})
    with rig.db.write_txn(DEVICES) as txn:
        txn.delete(DEVICES, Device(3, "eth1", hw_addr="02:00:00:00:00:03", selected=True))
    rig.ops.delete(E("198.51.100.10", "eth1"))
    assert rig.map.keys() == [("198.51.100.10", 2)]
    assert ("198.51.100.10", 3) in rig.garp.cancelled
