"""L2 pod announcements (``PodAnnouncer``): one burst per pod address (gratuitous ARP for IPv4,
unsolicited NAs for IPv6) when the pod gets it, on the configured interface; none for
host-network pods; a missing interface is a clear start-up error. The announce function is a fake that records its calls."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from agent.pod_announcer import PodAnnouncer
from common.tables.pods import PODS, Pod
from statedb import Database

IFINDEX = 7


class FakeAnnounce:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_for: set[str] = set()
        self._cond = threading.Condition()

    def __call__(self, ip: str, ifindex: int) -> None:
        with self._cond:
            self.calls.append((ip, ifindex))
            self._cond.notify_all()
        if ip in self.fail_for:
            raise OSError(errno.ENETDOWN, "Network is down")

    def wait_for(self, ip: str, timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: any(c[0] == ip for c in self.calls), timeout), (
                f"no burst for {ip}: {self.calls}"
            )


@pytest.fixture
def fake_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    def if_nametoindex(name: str) -> int:
        if name == "eth0":
            return IFINDEX
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(socket, "if_nametoindex", if_nametoindex)


@pytest.fixture
def db() -> Iterator[Database]:
    d = Database.open(None, [PODS])
    yield d
    d.close()


@pytest.fixture
def announce(fake_interfaces: None, db: Database) -> Iterator[FakeAnnounce]:
    fake = FakeAnnounce()
    pods = PodAnnouncer(db, "eth0", fake)
    pods.start()
    yield fake
    pods.stop()


def _write(db: Database, *pods: Pod) -> None:
    with db.write_txn(PODS) as txn:
        for p in pods:
            txn.upsert(PODS, p)


def _delete(db: Database, pod: Pod) -> None:
    with db.write_txn(PODS) as txn:
        txn.delete(PODS, pod)


def _settle(db: Database, announce: FakeAnnounce, marker: int) -> None:
    """Changes are handled in order: once a later pod's burst went out, earlier ones were seen."""
    ip = f"10.255.0.{marker}"
    _write(db, Pod("default", f"marker-{marker}", "node1", (ip,)))
    announce.wait_for(ip)


def test_one_burst_when_a_pod_gets_its_ipv4_address(db: Database, announce: FakeAnnounce) -> None:
    pod = Pod("default", "web", "node1")
    _write(db, pod)  # scheduled, no address yet
    _write(db, Pod("default", "web", "node1", ("10.0.0.5",)))
    announce.wait_for("10.0.0.5")
    # Updates that keep the address (labels, status) send nothing more.
    _write(db, Pod("default", "web", "node1", ("10.0.0.5",), False))
    _settle(db, announce, 1)
    assert [c for c in announce.calls if c[0] == "10.0.0.5"] == [("10.0.0.5", IFINDEX)]


def test_dual_stack_pods_get_a_burst_for_each_address(db: Database, announce: FakeAnnounce) -> None:
    # IPv6 ones are unsolicited Neighbour Advertisements (the sender picks the frame).
    _write(db, Pod("default", "dual", "node1", ("fd00::5", "10.0.0.6")))
    announce.wait_for("10.0.0.6")
    _write(db, Pod("default", "v6", "node1", ("fd00::6",)))
    announce.wait_for("fd00::6")
    _settle(db, announce, 2)
    assert [ip for ip, _ in announce.calls] == ["fd00::5", "10.0.0.6", "fd00::6", "10.255.0.2"]


def test_host_network_pods_get_none(db: Database, announce: FakeAnnounce) -> None:
    _write(db, Pod("kube-system", "agent", "node1", ("192.0.2.10",), host_network=True))
    _settle(db, announce, 3)
    assert [ip for ip, _ in announce.calls] == ["10.255.0.3"]


def test_a_new_address_or_a_recreated_pod_gets_a_new_burst(
    db: Database, announce: FakeAnnounce
) -> None:
    pod = Pod("default", "web", "node1", ("10.0.0.7",))
    _write(db, pod)
    announce.wait_for("10.0.0.7")
    _write(db, Pod("default", "web", "node1", ("10.0.0.8",)))  # readdressed
    announce.wait_for("10.0.0.8")
    _delete(db, Pod("default", "web", "node1", ("10.0.0.8",)))
    _settle(db, announce, 4)
    # A new pod of the same name (a StatefulSet's) starts without an address, then gets one.
    _write(db, Pod("default", "web", "node1"))
    _write(db, Pod("default", "web", "node1", ("10.0.0.8",)))
    _settle(db, announce, 5)
    assert [ip for ip, _ in announce.calls] == [
        "10.0.0.7",
        "10.0.0.8",
        "10.255.0.4",
        "10.0.0.8",
        "10.255.0.5",
    ]


def test_a_pod_recreated_with_the_same_address_between_two_reads_gets_a_new_burst(
    db: Database, announce: FakeAnnounce
) -> None:
    # The delete and the create land in one transaction, so the change feed hands the announcer
    # only the newest row: the same name and address, but another pod (another uid).
    _write(db, Pod("default", "db-0", "node1", ("10.0.0.10",), uid="uid-1"))
    announce.wait_for("10.0.0.10")
    with db.write_txn(PODS) as txn:
        txn.delete(PODS, Pod("default", "db-0", "node1", ("10.0.0.10",), uid="uid-1"))
        txn.upsert(PODS, Pod("default", "db-0", "node1", ("10.0.0.10",), uid="uid-2"))
    _settle(db, announce, 7)
    # The same pod updated (status, labels) keeps its uid and gets nothing more.
    _write(db, Pod("default", "db-0", "node1", ("10.0.0.10",), uid="uid-2"))
    _settle(db, announce, 8)
    assert [ip for ip, _ in announce.calls] == [
        "10.0.0.10",
        "10.0.0.10",
        "10.255.0.7",
        "10.255.0.8",
    ]


def test_a_failed_burst_is_logged_and_the_announcer_goes_on(
    db: Database, announce: FakeAnnounce, caplog: pytest.LogCaptureFixture
) -> None:
    announce.fail_for.add("10.0.0.9")
    _write(db, Pod("default", "web", "node1", ("10.0.0.9",)))
    _settle(db, announce, 6)
    assert "Failed to send gratuitous arp" in caplog.text and "10.0.0.9" in caplog.text


def test_a_missing_interface_is_a_clear_start_up_error(fake_interfaces: None, db: Database) -> None:
    with pytest.raises(RuntimeError) as err:
        PodAnnouncer(db, "bond7", FakeAnnounce())
    assert str(err.value) == 'gratuitous arp sender interface "bond7" not found: No such device'
