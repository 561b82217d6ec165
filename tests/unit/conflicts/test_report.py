"""What a conflict tells the Service: a Warning Event naming the foreign MAC and the Conflict
condition True; once over, a Normal Event and the condition False; a clean claim says False."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.conflicts.report import CONDITION, ConflictReports
from agent.conflicts.rules import Pair
from common.tables.conflicts import Conflict
from common.tables.services import Service

ROW = Conflict("198.51.100.20", "eth0", "02:00:00:00:00:99", "02:00:00:00:00:11", ("default/red",))


class Api:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []
        self.conditions: list[tuple[str, str, str, bool, str, str]] = []

    def look_up(self, namespace: str, name: str) -> str | None:
        return f"uid-{name}"

    def warning(self, ns: str, name: str, uid: str, reason: str, message: str) -> None:
        self.events.append(("Warning", f"{ns}/{name}", uid, reason, message))

    def normal(self, ns: str, name: str, uid: str, reason: str, message: str) -> None:
        self.events.append(("Normal", f"{ns}/{name}", uid, reason, message))

    def set_condition(
        self, ns: str, name: str, type_: str, status: bool, reason: str, message: str
    ) -> None:
        self.conditions.append((ns, name, type_, status, reason, message))


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_raised_then_cleared() -> None:
    api = Api()
    r = ConflictReports("node1", api.look_up, api.warning, api.normal, api.set_condition)
    r.start()
    try:
        r.raised(ROW)
        _until(lambda: len(api.events) == 1)
        assert api.events[0] == (
            "Warning",
            "default/red",
            "uid-red",
            "VIPConflict",
            "198.51.100.20 on eth0 is also answered by 02:00:00:00:00:99 (this node answers "
            "from 02:00:00:00:00:11); node node1 holds the lease",
        )
        assert api.conditions[-1][:5] == ("default", "red", CONDITION, True, "VIPConflict")
        # While a conflict is open, a clean look at another pair does not say False.
        r.clean(Pair("198.51.100.21", "eth0", "02:00:00:00:00:11", ("default/red",)))
        assert len(api.conditions) == 1
        r.cleared(ROW, "not heard for 3s")
        _until(lambda: len(api.events) == 2)
        assert api.events[1][0] == "Normal" and api.events[1][3] == "VIPConflictResolved"
        assert "02:00:00:00:00:99 not heard for 3s (node node1)" in api.events[1][4]
        assert api.conditions[-1][:5] == ("default", "red", CONDITION, False, "NoConflict")
    finally:
        r.stop()


def test_a_clean_claim_says_no_conflict_and_without_a_condition_writer_only_events_go() -> None:
    api = Api()
    r = ConflictReports("node1", api.look_up, api.warning, api.normal, api.set_condition)
    r.clean(Pair("198.51.100.20", "eth0", "02:00:00:00:00:11", ("default/red",)))
    assert api.conditions == [
        (
            "default",
            "red",
            CONDITION,
            False,
            "NoConflict",
            "no other host answers for 198.51.100.20 on eth0 (node node1)",
        )
    ]
    quiet = ConflictReports("node1", api.look_up, api.warning, api.normal, None)
    quiet.start()
    try:
        quiet.raised(ROW)
        _until(lambda: len(api.events) == 1)
        assert len(api.conditions) == 1
    finally:
        quiet.stop()


def test_with_the_services_table_a_clean_claim_writes_only_to_correct_a_stale_true() -> None:
    api = Api()
    rows = {
        "red": Service("default", "red", uid="uid-from-table", conflict_condition="False"),
        "blue": Service("default", "blue", conflict_condition=""),
        "green": Service("default", "green", conflict_condition="True"),
    }
    looked_up: list[str] = []

    def look_up(namespace: str, name: str) -> str | None:
        looked_up.append(name)
        return api.look_up(namespace, name)

    r = ConflictReports(
        "node1", look_up, api.warning, api.normal, api.set_condition,
        service_row=lambda ns, name: rows.get(name),
    )  # fmt: skip
    for name in ("red", "blue", "green", "gone"):
        r.clean(Pair("198.51.100.20", "eth0", "02:00:00:00:00:11", (f"default/{name}",)))
    assert [(c[1], c[3], c[4]) for c in api.conditions] == [("green", False, "NoConflict")]
    # The Event names the Service by the table's uid, without asking the API.
    r.start()
    try:
        r.raised(ROW)
        _until(lambda: len(api.events) == 1)
        assert api.events[0][2] == "uid-from-table" and looked_up == []
    finally:
        r.stop()
