"""What a new user trips over, at the announcer: a typo in a working policy, enable-external-ips,
a held lease with nothing to announce, and "Announcing" reported only for programmed pairs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agent.announcer.announced import AnnouncedServices
from agent.policy.evaluate import (
    COND_BAD_INTERFACE_REGEX,
    COND_BAD_NODE_SELECTOR,
    COND_BAD_SERVICE_SELECTOR,
)
from agent.service_status import ServiceStatusWriter
from common.tables import CATALOGUE, L2_ANNOUNCE, POLICIES, SERVICES
from common.tables.l2_announce import L2AnnounceEntry, Origin
from common.tables.policies import Policy
from common.tables.services import Service
from statedb import Database, Status, StatusKind
from tests.unit.announcer.test_announcer import LEASE, RED, Harness, started, stopped, until

NOT_IN_WITHOUT_VALUES = {"matchExpressions": [{"key": "x", "operator": "NotIn"}]}
RED_ORIGIN = Origin("default", "red")


@pytest.fixture
def h() -> Iterator[Harness]:
    h = started()
    yield h
    stopped(h)


def policy(generation: int, **kw: Any) -> Policy:
    base: dict[str, Any] = {
        "name": "policy1",
        "generation": generation,
        "service_selector": {"matchLabels": {"app": "red"}},
        "interfaces": ("^eth0$",),
        "load_balancer_ips": True,
    }
    return Policy(**{**base, **kw})


def a_pass_after(h: Harness, pred: Any) -> None:
    """Wait until ``pred`` holds, then for one more complete announcer pass."""
    until(pred)
    for _ in range(2):  # the pass that made pred true may still be running: one more after it
        more = h.announcer.recomputes + 1
        h.announcer.on_leadership("nudge", True, "")  # wakes the loop for another pass
        until(lambda: h.announcer.recomputes >= more)  # noqa: B023 (waited for at once)


# -- 1. a bad edit never withdraws ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "bad", "condition"),
    [
        ("service_selector", NOT_IN_WITHOUT_VALUES, COND_BAD_SERVICE_SELECTOR),
        ("node_selector", NOT_IN_WITHOUT_VALUES, COND_BAD_NODE_SELECTOR),
        ("interfaces", ("eth[0-",), COND_BAD_INTERFACE_REGEX),
    ],
)
def test_a_bad_edit_of_a_working_policy_keeps_announcing_until_it_is_fixed(
    h: Harness, field: str, bad: Any, condition: str, caplog: pytest.LogCaptureFixture
) -> None:
    h.write(POLICIES, policy(1))
    h.write(SERVICES, RED)
    until(lambda: h.entries() == [("198.51.100.10", "eth0", (RED_ORIGIN,))])

    h.write(POLICIES, policy(2, **{field: bad}))
    a_pass_after(h, lambda: any(c[0] == "policy1" and c[1] == 2 for c in h.conditions))
    written = [c for c in h.conditions if c[1] == 2][-1]  # the harness keeps every submission
    assert [(c["type"], c["status"]) for c in written[2]] == [(condition, "True")]
    assert h.entries() == [("198.51.100.10", "eth0", (RED_ORIGIN,))], "still announced"
    assert h.api.leases[LEASE].holder == "node1", "lease kept, not released"
    warnings = [r for r in caplog.records if r.getMessage() == "Error processing policy event"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

    # The user fixes it (and moves it to eth1): the corrected version applies.
    h.write(POLICIES, policy(3, interfaces=("^eth1$",), conditions=written[2]))
    until(lambda: h.entries() == [("198.51.100.10", "eth1", (RED_ORIGIN,))])
    until(lambda: h.conditions[-1][1] == 3)
    assert [(c["type"], c["status"]) for c in h.conditions[-1][2]] == [(condition, "False")]


# -- 2. enable-external-ips -------------------------------------------------------------------

EXTERNAL = Service("default", "red", (("app", "red"),), "ClusterIP", "", ("198.51.100.64",), ())
BOTH = Service("default", "red", (("app", "red"),), "LoadBalancer", "", ("198.51.100.64",),
               ("198.51.100.10",))  # fmt: skip


def test_external_ips_are_not_announced_while_enable_external_ips_is_false(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.write(POLICIES, policy(1, external_ips=True))
    h.write(SERVICES, EXTERNAL)
    a_pass_after(h, lambda: h.announcer.external_ips_ignored == {("default", "red")})
    for _ in range(3):
        a_pass_after(h, lambda: True)
    assert h.entries() == []
    assert LEASE not in h.api.leases, "a Service selected for its external IPs alone: no lease"
    assert "spec.externalIPs of 1 service(s) not announced (e.g. default/red): " \
        "enable-external-ips is false" in str(h.announcer.health.current())  # fmt: skip
    lines = [r for r in caplog.records if "enable-external-ips is false" in r.getMessage()]
    assert len(lines) == 1, "logged once, not once per pass"
    assert lines[0].levelno == logging.WARNING
    assert lines[0].fields["service"] == "default/red"  # type: ignore[attr-defined]

    # With load balancer IPs too, the lease is taken for those, and only those are announced.
    h.write(SERVICES, BOTH)
    until(lambda: h.entries() == [("198.51.100.10", "eth0", (RED_ORIGIN,))])
    a_pass_after(h, lambda: True)
    assert h.entries() == [("198.51.100.10", "eth0", (RED_ORIGIN,))]


def test_external_ips_are_announced_when_enable_external_ips_is_true() -> None:
    h = started(external_ips=True)
    try:
        h.write(POLICIES, policy(1, external_ips=True))
        h.write(SERVICES, BOTH)
        until(
            lambda: (
                h.entries()
                == [
                    ("198.51.100.10", "eth0", (RED_ORIGIN,)),
                    ("198.51.100.64", "eth0", (RED_ORIGIN,)),
                ]
            )
        )
        assert h.announcer.external_ips_ignored == set()
    finally:
        stopped(h)


# -- 4. a held lease with nothing to announce ---------------------------------------------------


def test_a_held_lease_with_nothing_to_announce_says_why_once(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.write(POLICIES, policy(1, interfaces=("^wlan[0-9]+",)))
    h.write(SERVICES, RED)
    until(lambda: h.elector.is_leading(LEASE))
    a_pass_after(h, lambda: bool(h.announcer.nothing_to_announce))
    a_pass_after(h, lambda: True)
    assert h.entries() == []
    why = "policy policy1: its interfaces match none of this node's selected devices (eth0, eth1)"
    assert h.announcer.nothing_to_announce == {("default", "red"): why}
    assert f"nothing to announce for 1 held lease(s), e.g. default/red: {why}" in str(
        h.announcer.health.current()
    )
    lines = [r for r in caplog.records if "announcing nothing" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    # Fixed: the note goes.
    h.write(POLICIES, policy(2))
    until(lambda: len(h.entries()) == 1)
    a_pass_after(h, lambda: True)
    assert h.announcer.nothing_to_announce == {}
    assert "nothing to announce" not in str(h.announcer.health.current())


# -- 4. "Announcing" only for programmed pairs ---------------------------------------------------


class Tracker:
    def __init__(self, reconciled: bool) -> None:
        self.db = Database.open(None, CATALOGUE.values())
        self.calls: list[tuple[Origin, list[tuple[str, str]]]] = []
        self.loop = AnnouncedServices(
            self.db, lambda o, pairs: self.calls.append((o, pairs)), reconciled
        )

    def put(self, *rows: L2AnnounceEntry) -> None:
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            for r in rows:
                txn.upsert(L2_ANNOUNCE, r)

    def drop(self, row: L2AnnounceEntry) -> None:
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            txn.delete(L2_ANNOUNCE, row)

    def settle(self) -> None:
        # Drive the loop synchronously: one batch of everything committed so far.
        assert self.loop._consumer is not None
        self.loop.handle(self.loop._consumer.changes(), False)


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker(reconciled=True)
    t.loop._consumer = t.db.register_consumer(t.loop.name, L2_ANNOUNCE)
    yield t
    t.db.close()


def done(ip: str, iface: str = "eth0") -> L2AnnounceEntry:
    return L2AnnounceEntry(ip, iface, (RED_ORIGIN,), Status(StatusKind.DONE, "", 1.0))


def test_a_service_is_announced_once_a_pair_is_programmed(tracker: Tracker) -> None:
    pending = L2AnnounceEntry("198.51.100.10", "eth0", (RED_ORIGIN,))
    tracker.put(pending)
    tracker.settle()
    assert tracker.calls == [], "pending: not in the BPF map yet"
    failed = L2AnnounceEntry(
        "198.51.100.10", "eth0", (RED_ORIGIN,), Status(StatusKind.ERROR, "map full", 1.0)
    )
    tracker.put(failed)
    tracker.settle()
    assert tracker.calls == []
    tracker.put(done("198.51.100.10"), done("198.51.100.10", "eth1"))
    tracker.settle()
    assert tracker.calls == [(RED_ORIGIN, [("198.51.100.10", "eth0"), ("198.51.100.10", "eth1")])]
    tracker.put(done("198.51.100.11"))
    tracker.settle()
    assert len(tracker.calls) == 1, "more pairs of an announced Service: no new announcement"
    for ip, iface in (("198.51.100.10", "eth0"), ("198.51.100.10", "eth1"), ("198.51.100.11",
                                                                              "eth0")):  # fmt: skip
        tracker.drop(done(ip, iface))
    tracker.settle()
    assert tracker.loop.announced() == {}


def test_without_a_datapath_a_row_is_as_far_as_a_pair_gets() -> None:
    t = Tracker(reconciled=False)
    t.loop._consumer = t.db.register_consumer(t.loop.name, L2_ANNOUNCE)
    try:
        t.put(L2AnnounceEntry("198.51.100.10", "eth0", (RED_ORIGIN,)))
        t.settle()
        assert t.calls == [(RED_ORIGIN, [("198.51.100.10", "eth0")])]
    finally:
        t.db.close()


# -- 5. repeated acquisitions by the same node add one event ------------------------------------


class Writes:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.fail = False
        self.cond = threading.Condition()

    def look_up(self, namespace: str, name: str) -> str | None:
        if self.fail:
            raise RuntimeError("API down")
        return "uid-1"

    def record(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        with self.cond:
            self.events.append((name, reason, message))
            self.cond.notify_all()


def test_the_same_node_announcing_again_adds_no_event_until_another_node_held_the_lease() -> None:
    w = Writes()
    writer = ServiceStatusWriter("node1", w.look_up, w.record)
    writer.start()
    try:
        writer.announced("default", "red", [("192.0.2.1", "eth0")], "kube-system/lease-red")
        until(lambda: writer.written == 1)
        for i in range(5):  # the lease flaps: lost and re-taken by node1 each time
            writer.announced("default", "red", [("192.0.2.1", f"eth{i}")])
        assert writer.skipped == 5
        writer.other_holder("default", "red", "node2")  # node2 held it meanwhile
        writer.announced("default", "red", [("192.0.2.1", "eth0"), ("192.0.2.2", "eth1")])
        until(lambda: writer.written == 2)
        assert [e[2] for e in w.events] == [
            "announcing 192.0.2.1 on eth0 from node node1 (lease kube-system/lease-red)",
            "announcing 192.0.2.1 on eth0, 192.0.2.2 on eth1 from node node1",
        ]
        # A failed write is not remembered as written: the next announcement tries again.
        writer.other_holder("default", "red", "node2")
        w.fail = True
        writer.announced("default", "red")
        until(lambda: ("default", "red") not in writer._ours)
        w.fail = False
        writer.announced("default", "red")
        until(lambda: writer.written == 3)
    finally:
        writer.stop()


def test_a_service_deleted_before_its_event_went_out_gets_none() -> None:
    w = Writes()
    gone: set[tuple[str, str]] = {("default", "red")}

    def look_up(namespace: str, name: str) -> str | None:
        return None if (namespace, name) in gone else "uid-1"

    writer = ServiceStatusWriter("node1", look_up, w.record)
    writer.start()
    try:
        writer.announced("default", "red", [("192.0.2.1", "eth0")])
        writer.announced("default", "blue", [("192.0.2.2", "eth0")])
        until(lambda: writer.written + writer.gone == 2)
        assert (writer.written, writer.gone) == (1, 1)
        assert [e[0] for e in w.events] == ["blue"]
    finally:
        writer.stop()
