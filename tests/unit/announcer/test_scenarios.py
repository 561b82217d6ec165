"""Scenarios of the l2-announcer, as scripts (testdata/*.txtar, format in tests/scenario.py).

The announcer runs over an in-memory database with a scripted elector: the script says when the
node wins or loses a Service's lease, and sees which leases the announcer campaigns for. After
every input the runner does one round of the announcer's loop on the test's thread, so a script
is deterministic and needs no waiting.

Commands (rows are upserted whole: a command replaces the row it names)::

    start [external-ips] [unsettled]  # the announcer of node1; enable-external-ips; an elector
                                      # still taking back the leases of before a restart
    node zone=a ...                   # node1's labels
    device eth0 [unselected]          # a device row (selected for announcing unless said)
    device-gone eth0
    init                              # nodes, devices, services, policies: initial sync done
    policy p1 [services=SEL] [nodes=SEL] [interfaces=RE,RE] [lb] [external] [generation=N]
                                      # with the conditions last written for it, if any
                                      # SEL: app=red,tier=web (matchLabels) or
                                      # '{JSON}' (single quotes keep its quotes)
    policy-gone p1
    service default/red [lb=IP,IP] [external=IP,IP] [labels=app=red] [class=CLASS]
    service-gone default/red
    lease default/red holder=node2    # the lease as the lease watch shows it
    lead default/red                  # the elector starts leading the Service's lease
    lose default/red                  # ... or stops
    settled                           # the elector has taken back what it held before
    advance S                         # the clock (the settle timeout is 5 s)
    stop                              # the announcer stops
    expect NAME                       # the state now, and the reports since the last expect
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.announcer.controller import WAIT_TABLES, L2Announcer
from agent.leases.record import LeaseRecord
from agent.runtime import FakeClock
from common.leases import lease_name
from common.tables import CATALOGUE, DEVICES, L2_ANNOUNCE, LEASES, NODES, POLICIES, SERVICES
from common.tables.devices import Device
from common.tables.l2_announce import Origin
from common.tables.leases import Lease
from common.tables.nodes import Node
from common.tables.policies import Policy
from common.tables.services import Service
from statedb import Database, Table
from tests.scenario import ScenarioRunner, Script, ScriptError, broken_copies, run_script

NODE = "node1"
WALL = 1_800_000_000.0  # the wall clock the announcer stamps conditions with
SETTLE_TIMEOUT = 5.0  # how long l2-announce waits for the elector to take back old leases


class ScriptedElector:
    """The elector as the announcer uses it: campaigns are recorded, leadership is the script's.
    Like the real one, it reports a loss when a campaign it leads is dropped."""

    def __init__(self) -> None:
        self.wanted: set[str] = set()
        self.leading: set[str] = set()
        self.observed: dict[str, LeaseRecord | None] = {}
        self.is_settled = True
        self.losses: list[str] = []  # leases to report as lost after this round

    def want(self, name: str, wanted: bool) -> None:
        if wanted:
            self.wanted.add(name)
            return
        self.wanted.discard(name)
        if name in self.leading:
            self.leading.discard(name)
            self.losses.append(name)

    def observe(self, name: str, record: LeaseRecord | None) -> None:
        self.observed[name] = record

    def is_leading(self, name: str) -> bool:
        return name in self.leading

    def settled(self) -> bool:
        return self.is_settled


def _words(args: str) -> tuple[list[str], dict[str, str]]:
    """Positional words and key=value options."""
    positional, options = [], {}
    for word in shlex.split(args):
        key, eq, value = word.partition("=")
        if eq:
            options[key] = value
        else:
            positional.append(word)
    return positional, options


def _selector(text: str | None) -> Any:
    if text is None:
        return None
    if text.startswith("{"):
        return json.loads(text)
    return {"matchLabels": dict(pair.split("=", 1) for pair in text.split(",") if pair)}


def _list(text: str | None) -> tuple[str, ...]:
    return tuple(x for x in (text or "").split(",") if x)


def _service_key(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash:
        raise ScriptError(f"a Service is namespace/name, not {text!r}")
    return namespace, name


@dataclass
class AnnouncerRunner(ScenarioRunner):
    db: Database | None = None
    elector: ScriptedElector = field(default_factory=ScriptedElector)
    announcer: L2Announcer | None = None
    reports: list[str] = field(default_factory=list)
    ifindex: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    status: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # policy conditions
    clock: FakeClock = field(default_factory=lambda: FakeClock(monotonic=0.0, now=WALL))

    def close(self) -> None:
        if self.announcer is not None and not self.stopped:
            self.announcer.stop()
        if self.db is not None:
            self.db.close()

    def _started(self) -> tuple[Database, L2Announcer]:
        if self.db is None or self.announcer is None:
            raise ScriptError("no announcer: 'start' first")
        return self.db, self.announcer

    def _round(self) -> None:
        """One round of the announcer's loop (on this thread), then the losses the elector
        reports from its own thread in the agent, each followed by a round again."""
        _db, a = self._started()
        a.run_round()
        while self.elector.losses:
            a.on_leadership(self.elector.losses.pop(0), False, "no longer selected")
            self._round()

    def _write(self, table: Table[Any], row: Any) -> None:
        db, _a = self._started()
        with db.write_txn(table) as txn:
            txn.upsert(table, row)
        self._round()

    def _delete(self, table: Table[Any], row: Any) -> None:
        db, _a = self._started()
        with db.write_txn(table) as txn:
            txn.delete(table, row)
        self._round()

    # -- setup and inputs -----------------------------------------------------------------------

    def cmd_start(self, _lineno: int, args: str) -> None:
        flags, _ = _words(args)
        if unknown := set(flags) - {"external-ips", "unsettled"}:
            raise ScriptError(f"unknown start flags {sorted(unknown)}")
        self.db = Database.open(None, CATALOGUE.values())
        self.elector.is_settled = "unsettled" not in flags
        a = L2Announcer(
            self.db,
            self.elector,  # type: ignore[arg-type]
            NODE,
            self._conditions_written,
            settle_timeout=SETTLE_TIMEOUT,
            external_ips="external-ips" in flags,
            on_other_holder=self._other_holder,
            clock=self.clock,
        )
        # Its loop runs here, one round per input (see _round), instead of in its job.
        a.open_feeds()
        self.announcer = a
        with self.db.write_txn(LEASES) as txn:
            txn.register_initializer(LEASES, "test")
            txn.initializer_done(LEASES, "test")

    def _conditions_written(self, policy: str, conds: list[dict[str, Any]]) -> None:
        self.status[policy] = conds
        for c in conds:
            message = f": {c['message']}" if c.get("message") else ""
            generation = c["observedGeneration"]
            self.reports.append(
                f"policy {policy} generation {generation} condition {c['type']}={c['status']}"
                + message
            )

    def _other_holder(self, namespace: str, name: str, holder: str) -> None:
        if holder:
            self.reports.append(f"{namespace}/{name} held by {holder}")
        else:
            self.reports.append(f"{namespace}/{name} no longer campaigned for")

    def cmd_node(self, _lineno: int, args: str) -> None:
        _, labels = _words(args)
        self._write(NODES, Node(NODE, tuple(sorted(labels.items()))))

    def cmd_device(self, _lineno: int, args: str) -> None:
        words, _ = _words(args)
        name = words[0]
        index = self.ifindex.setdefault(name, len(self.ifindex) + 2)
        self._write(DEVICES, Device(index, name, selected="unselected" not in words[1:]))

    def cmd_device_gone(self, _lineno: int, name: str) -> None:
        if name not in self.ifindex:
            raise ScriptError(f"no device {name!r}")
        self._delete(DEVICES, Device(self.ifindex[name], name))

    def cmd_init(self, _lineno: int, _args: str) -> None:
        db, _a = self._started()
        for table in WAIT_TABLES:
            with db.write_txn(table) as txn:
                txn.register_initializer(table, "test")
                txn.initializer_done(table, "test")
        self._round()

    def cmd_policy(self, _lineno: int, args: str) -> None:
        words, o = _words(args)
        policy = Policy(
            words[0],
            int(o.get("generation", "1")),
            _selector(o.get("services")),
            _selector(o.get("nodes")),
            _list(o.get("interfaces")),
            external_ips="external" in words[1:],
            load_balancer_ips="lb" in words[1:],
            # The status the announcer wrote comes back with the policy, as the watch brings it.
            conditions=self.status.get(words[0]),
        )
        self._write(POLICIES, policy)

    def cmd_policy_gone(self, _lineno: int, name: str) -> None:
        self._delete(POLICIES, Policy(name))

    def cmd_service(self, _lineno: int, args: str) -> None:
        words, o = _words(args)
        namespace, name = _service_key(words[0])
        labels = dict(pair.split("=", 1) for pair in _list(o.get("labels")))
        external = _list(o.get("external")) if "external" in o else None
        service = Service(
            namespace,
            name,
            tuple(sorted(labels.items())),
            "LoadBalancer",
            o.get("class", ""),
            external,
            _list(o.get("lb")),
        )
        self._write(SERVICES, service)

    def cmd_service_gone(self, _lineno: int, key: str) -> None:
        self._delete(SERVICES, Service(*_service_key(key)))

    def cmd_lease(self, _lineno: int, args: str) -> None:
        words, o = _words(args)
        lease = lease_name(*_service_key(words[0]))
        db, _a = self._started()
        with db.write_txn(LEASES) as txn:
            txn.upsert(LEASES, Lease(lease, o.get("holder", ""), 15, "t", "t", 0, "1"))
        self._round()

    def cmd_lead(self, _lineno: int, key: str) -> None:
        _db, a = self._started()
        lease = lease_name(*_service_key(key))
        if lease not in self.elector.wanted:
            raise ScriptError(f"the announcer does not campaign for {lease}")
        self.elector.leading.add(lease)
        a.on_leadership(lease, True, "acquired")
        self._round()

    def cmd_lose(self, _lineno: int, key: str) -> None:
        _db, a = self._started()
        lease = lease_name(*_service_key(key))
        if lease not in self.elector.leading:
            raise ScriptError(f"not leading {lease}")
        self.elector.leading.discard(lease)
        a.on_leadership(lease, False, "renew deadline passed")
        # What the callback itself withdrew, before any round: the elector sends its release
        # right after the callback returns, and another node may take over at once.
        db, _a = self._started()
        with db.read_txn() as r:
            left = [e for e in r.all(L2_ANNOUNCE) if Origin(*_service_key(key)) in e.origins]
        self.reports.append(f"after the loss callback, {key} has {len(left)} entries")
        self._round()

    def cmd_settled(self, _lineno: int, _args: str) -> None:
        self.elector.is_settled = True
        self._round()

    def cmd_advance(self, _lineno: int, seconds: str) -> None:
        self.clock.advance(float(seconds))
        self._round()

    def cmd_stop(self, _lineno: int, _args: str) -> None:
        _db, a = self._started()
        a.stop()
        self.stopped = True

    # -- expectations ---------------------------------------------------------------------------

    def cmd_expect(self, _lineno: int, name: str) -> None:
        db, a = self._started()
        lines = ["campaigns:"]
        for lease in sorted(self.elector.wanted):
            lines.append(f"  {lease}" + (" leading" if lease in self.elector.leading else ""))
        initialized = "initialized" if db.initialized(L2_ANNOUNCE) else "not initialized"
        lines.append(f"l2-announce ({initialized}):")
        with db.read_txn() as r:
            for e in r.all(L2_ANNOUNCE):
                origins = " ".join(f"{o.namespace}/{o.name}" for o in e.origins)
                lines.append(f"  {e.ip} {e.network_interface} {origins}")
        lines.append(f"health: {a.health.current()}")
        lines += [f"reported: {x}" for x in self.reports]
        self.reports = []
        self.compare(name, "".join(line + "\n" for line in lines))


SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txtar"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(path: Path) -> None:
    run_script(path, AnnouncerRunner)


def test_there_are_scenarios() -> None:
    assert len(SCRIPTS) >= 6


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_expectation_of_a_scenario_can_fail(path: Path) -> None:
    for what, broken in broken_copies(Script.parse(path.read_text())):
        with pytest.raises(ScriptError):
            AnnouncerRunner(broken, update=False).run()
            pytest.fail(f"{path.name} passes with a wrong {what}")


def test_a_lead_without_a_campaign_is_a_script_error() -> None:
    script = Script.parse("start\ninit\nlead default/red\n")
    with pytest.raises(ScriptError, match="does not campaign"):
        AnnouncerRunner(script, update=False).run()
