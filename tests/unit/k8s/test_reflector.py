"""Reflectors with a scripted source: list, watch, bookmarks, 410, errors, filtering."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from agent.k8s.reflector import ApiStatusError, Reflector, RowMapping
from statedb import Database, Table


@dataclass(frozen=True, slots=True)
class Svc:
    name: str
    ip: str


SVCS: Table[Svc] = Table(
    name="svcs",
    sql_name="svcs",
    row_type=Svc,
    primary_key=("name",),
    header=("Name", "IP"),
    format_row=lambda s: (s.name, s.ip),
    to_json=lambda s: {"name": s.name},
)


def obj(name: str, ip: str = "198.51.100.1", rv: str = "1", cls: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": rv},
        "spec": {"ip": ip, "class": cls},
    }


def to_row(o: dict[str, Any]) -> Svc | None:
    if o["spec"].get("class"):
        return None  # someone else's
    return Svc(o["metadata"]["name"], o["spec"]["ip"])


MAPPING = RowMapping(SVCS, to_row, lambda o: (o["metadata"]["name"],))


class FakeSource:
    description = "svcs"

    def __init__(self) -> None:
        self.lists: queue.Queue[tuple[list[dict[str, Any]], str] | Exception] = queue.Queue()
        self.watches: queue.Queue[list[dict[str, Any]] | Exception] = queue.Queue()
        self.watched_from: list[str] = []

    def list(self) -> tuple[list[dict[str, Any]], str]:
        try:
            item = self.lists.get(timeout=0.2)
        except queue.Empty:
            raise ApiStatusError(503, "no list scripted") from None
        if isinstance(item, Exception):
            raise item
        return item

    def interrupt(self) -> None:
        pass

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[dict[str, Any]]:
        self.watched_from.append(resource_version)
        while not stop.is_set():
            try:
                item = self.watches.get(timeout=0.01)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            yield from item
            return


@pytest.fixture
def db() -> Iterator[Database]:
    d = Database.open(None, [SVCS])
    yield d
    d.close()


def until(pred: Callable[[], bool], timeout: float = 5) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def rows(db: Database) -> list[Svc]:
    with db.read_txn() as r:
        return r.all(SVCS)


def start(db: Database, src: FakeSource) -> Reflector[Svc]:
    r = Reflector(db, src, MAPPING, rand=lambda: 0.0, backoff=(0.01, 0.05))
    r.start()
    return r


def test_list_then_watch_events_then_bookmark_resume(db: Database) -> None:
    src = FakeSource()
    src.lists.put(([obj("a"), obj("b", cls="other")], "10"))
    r = start(db, src)
    try:
        assert db.wait_initialized(SVCS, timeout=5)
        assert rows(db) == [Svc("a", "198.51.100.1")]
        src.watches.put(
            [
                {"type": "ADDED", "object": obj("c", rv="11")},
                {"type": "MODIFIED", "object": obj("a", "198.51.100.2", rv="12")},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ]
        )
        until(lambda: rows(db) == [Svc("a", "198.51.100.2"), Svc("c", "198.51.100.1")])
        until(lambda: len(src.watched_from) >= 2)
        assert src.watched_from[:2] == ["10", "15"], "resumes from the bookmark"
        src.watches.put([{"type": "DELETED", "object": obj("c", rv="16")}])
        until(lambda: rows(db) == [Svc("a", "198.51.100.2")])
        # An object that stops being ours (its class changed) leaves the table.
        src.watches.put([{"type": "MODIFIED", "object": obj("a", cls="other", rv="17")}])
        until(lambda: rows(db) == [])
        assert r.lists == 1
    finally:
        r.stop()


def test_410_in_the_stream_relists_and_drops_what_vanished(db: Database) -> None:
    src = FakeSource()
    src.lists.put(([obj("a"), obj("b")], "10"))
    r = start(db, src)
    try:
        until(lambda: len(rows(db)) == 2)
        src.lists.put(([obj("b", "203.0.113.9")], "30"))
        src.watches.put([{"type": "ERROR", "object": {"code": 410, "message": "too old"}}])
        until(lambda: rows(db) == [Svc("b", "203.0.113.9")])
        assert r.lists == 2
        until(lambda: src.watched_from[-1] == "30")
    finally:
        r.stop()


def test_errors_back_off_log_once_and_recover(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    src = FakeSource()
    for _ in range(3):
        src.lists.put(ApiStatusError(404, "the server could not find the requested resource"))
    src.lists.put(([obj("a")], "5"))
    r = start(db, src)
    try:
        assert db.wait_initialized(SVCS, timeout=5)
        waiting = [m for m in caplog.messages if "waiting for svcs to be served" in m]
        assert len(waiting) == 1
        src.lists.put(([obj("a")], "9"))
        src.watches.put(ConnectionResetError("connection reset by peer"))
        until(lambda: r.lists == 2)
        assert str(r.health.current()) == "OK"
        assert any("ConnectionResetError" in m or "reset" in m for m in caplog.messages)
    finally:
        r.stop()


def test_not_initialized_before_the_first_list(db: Database) -> None:
    src = FakeSource()
    src.lists.put(ApiStatusError(500, "etcdserver: request timed out"))
    r = start(db, src)
    try:
        assert not db.wait_initialized(SVCS, timeout=0.1)
        assert str(r.health.current()).startswith("Degraded: etcdserver")
    finally:
        r.stop()


@pytest.mark.parametrize("status", [403, 404])
def test_an_optional_table_is_initialized_empty_when_refused_and_filled_once_allowed(
    db: Database, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    src = FakeSource()
    src.lists.put(ApiStatusError(status, 'svcs is forbidden: User "agent" cannot list'))
    r = Reflector(db, src, replace(MAPPING, optional=True), rand=lambda: 0.0, backoff=(0.05, 0.1))
    r.start()
    try:
        assert db.wait_initialized(SVCS, timeout=5)
        assert r.lists == 0 and rows(db) == []
        assert str(r.health.current()).startswith("Degraded")
        src.lists.put(([obj("a")], "5"))  # allowed now: it lists and fills the table
        until(lambda: rows(db) == [Svc("a", "198.51.100.1")])
        assert [m for m in caplog.messages if "going on without svcs" in m] != []
    finally:
        r.stop()


def test_a_required_table_stays_uninitialized_when_refused(db: Database) -> None:
    src = FakeSource()
    src.lists.put(ApiStatusError(403, 'svcs is forbidden: User "agent" cannot list'))
    r = start(db, src)
    try:
        assert not db.wait_initialized(SVCS, timeout=0.2)
    finally:
        r.stop()
