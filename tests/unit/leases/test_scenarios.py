"""Scenarios of one lease election, as scripts (testdata/*.txtar, format in tests/scenario.py).

The script drives the pure ``LeaseElection`` the way the elector's scheduler does, on virtual
time: it steps the election after every input and at every deadline it names, keeps at most one
request in flight, and answers it only when the script says ``reply``. The lease on the API
server is ``sim.Server``, which applies resourceVersion preconditions as the real one does.

Commands::

    elector identity=node1 duration=15 deadline=10 retry=2 [jitter=0]
                                    # lease duration, renew deadline, retry period (seconds);
                                    # jitter: what rand() returns (backoff = retry * (1 + 1.2 j))
    lease holder=node2 [duration=15] [renew=-3] [transitions=0]
                                    # the lease already on the server (no watch event)
    want | unwant                   # campaign for the lease, or give it up (a Service no longer
                                    # selected, or the agent stopping: both release it)
    write holder=node2 [duration=15] [renew=T] [transitions=N] [unseen]
                                    # another node writes the lease; the watch delivers it
                                    # unless `unseen` (then `watch` delivers it later)
    delete [unseen]                 # someone deletes the lease
    watch                           # the watch delivers the server's current record
    reply [conflict|notfound|forbidden|timeout|error MESSAGE] [waited=S]
                                    # answer the request in flight: by the server's rules, or
                                    # the given failure; waited: seconds the request waited
                                    # client-side before it went out (the rate limiter)
    advance S                       # virtual time, stepping at each deadline on the way
    expect NAME                     # what happened since the previous expect (file NAME)
    expect-lease holder=... ...     # the record on the server now (inline)

What happened is one line per request sent and per leadership change, stamped with the virtual
time. Record times (acquired=, renewed=) are seconds from the start on the wall clock, which
starts with the virtual clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.leases.election import LeaseElection, Outcome, Request, Timings
from agent.leases.record import LeaseRecord, micro_time
from tests.scenario import ScenarioRunner, Script, ScriptError, broken_copies, run_script
from tests.unit.leases.sim import Server

WALL0 = 1_800_000_000.0  # the wall clock when the virtual clock reads 0
LEASE = "cilium-l2announce-default-red"
# reply word -> the outcome the elector makes of that API error
FAILURES: dict[str, Outcome] = {
    "conflict": Outcome(error="conflict", message="the object has been modified"),
    "notfound": Outcome(error="notfound", message="not found"),
    "forbidden": Outcome(error="forbidden", message='leases "x" is forbidden'),
    "timeout": Outcome(error="other", message="context deadline exceeded"),
}


def _options(args: str, known: set[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for word in shlex.split(args):
        key, eq, value = word.partition("=")
        if key not in known:
            raise ScriptError(f"unknown option {key!r} (known: {', '.join(sorted(known))})")
        opts[key] = value if eq else "true"
    return opts


def _seconds(stamp: str) -> str:
    """A MicroTime as seconds since the start of the script (the stamp itself if not one)."""
    try:
        t = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return stamp or "-"
    return f"{t.timestamp() - WALL0:.3f}"


def describe(record: LeaseRecord | None) -> str:
    if record is None:
        return "none"
    out = (
        f"holder={record.holder or '-'} duration={record.duration_seconds} "
        f"acquired={_seconds(record.acquire_time)} renewed={_seconds(record.renew_time)} "
        f"transitions={record.transitions}"
    )
    return out + (f" rv={record.resource_version}" if record.resource_version else "")


@dataclass
class ElectionRunner(ScenarioRunner):
    now: float = 0.0
    jitter: float = 0.0
    election: LeaseElection | None = None
    server: Server = field(default_factory=Server)
    happened: list[str] = field(default_factory=list)

    def _election(self) -> LeaseElection:
        if self.election is None:
            raise ScriptError("no election: 'elector' first")
        return self.election

    def _say(self, what: str) -> None:
        self.happened.append(f"{self.now:.3f} {what}")

    def _step(self) -> None:
        """What the scheduler does when an election is due: step, send, report."""
        e = self._election()
        req = e.step(self.now, WALL0 + self.now)
        for ev in e.drain_events():
            if ev.leading:
                took = ev.takeover_seconds
                after = "" if took is None else f", {took:.3f}s after the lease became free"
                self._say(f"leading: {ev.reason}{after}")
            else:
                self._say(f"stopped leading: {ev.reason}")
        if req is not None:
            record = "" if req.record is None else " " + describe(req.record)
            self._say(f"send {req.kind} {req.purpose}{record} timeout={req.timeout:g}")

    # -- setup and inputs -----------------------------------------------------------------------

    def cmd_elector(self, _lineno: int, args: str) -> None:
        o = _options(args, {"identity", "duration", "deadline", "retry", "jitter"})
        timings = Timings(
            float(o.get("duration", "15")),
            float(o.get("deadline", "10")),
            float(o.get("retry", "2")),
        )
        self.jitter = float(o.get("jitter", "0"))
        self.election = LeaseElection(LEASE, o.get("identity", "node1"), timings, self._rand)

    def _rand(self) -> float:
        return self.jitter

    def _record(self, args: str) -> LeaseRecord:
        """A record another node writes; unless given, it keeps the acquire time of its own
        previous record, and counts a transition when a new holder takes it (a release does
        not count one, as in client-go)."""
        o = _options(args, {"holder", "duration", "renew", "acquire", "transitions", "unseen"})
        holder = o.get("holder", "")
        prev = self.server.record
        same = prev is not None and prev.holder == holder
        renew = micro_time(WALL0 + float(o.get("renew", str(self.now))))
        acquire = renew if prev is None or not same else prev.acquire_time
        if "acquire" in o:
            acquire = micro_time(WALL0 + float(o["acquire"]))
        transitions = 0 if prev is None else prev.transitions + (not same and holder != "")
        return LeaseRecord(
            holder=holder,
            duration_seconds=int(o.get("duration", "15")),
            acquire_time=acquire,
            renew_time=renew,
            transitions=int(o.get("transitions", str(transitions))),
        )

    def _store(self, record: LeaseRecord) -> None:
        self.server.rv += 1
        self.server.record = dataclasses.replace(record, resource_version=str(self.server.rv))

    def cmd_lease(self, _lineno: int, args: str) -> None:
        self._store(self._record(args))

    def cmd_want(self, _lineno: int, _args: str) -> None:
        self._election().set_wanted(True)
        self._step()

    def cmd_unwant(self, _lineno: int, _args: str) -> None:
        self._election().set_wanted(False)
        self._step()

    def cmd_write(self, lineno: int, args: str) -> None:
        self._store(self._record(args))
        if "unseen" not in args.split():
            self.cmd_watch(lineno, "")

    def cmd_delete(self, lineno: int, args: str) -> None:
        self.server.record = None
        if args != "unseen":
            self.cmd_watch(lineno, "")

    def cmd_watch(self, _lineno: int, _args: str) -> None:
        self._election().observe(self.server.record, self.now)
        self._step()

    def cmd_reply(self, _lineno: int, args: str) -> None:
        e = self._election()
        req: Request | None = e.in_flight
        if req is None:
            raise ScriptError("no request in flight")
        words = args.split()
        waited = 0.0
        if words and words[-1].startswith("waited="):
            waited = float(words.pop().partition("=")[2])
        if not words:
            outcome = self.server.apply(req, self.now)
        elif words[0] in FAILURES:
            outcome = FAILURES[words[0]]
        elif words[0] == "error":
            outcome = Outcome(error="other", message=" ".join(words[1:]))
        else:
            raise ScriptError(f"unknown reply {words[0]!r}")
        sent = req.sent_at + waited if waited else None
        e.complete(req, outcome, self.now, sent_at=sent)
        self._step()

    def cmd_advance(self, _lineno: int, args: str) -> None:
        e = self._election()
        target = self.now + float(args)
        while (deadline := e.next_deadline()) <= target:
            self.now = max(self.now, deadline)
            self._step()
            if e.next_deadline() <= self.now:
                raise ScriptError(f"the election is due again at once at {self.now:.3f}")
        self.now = target

    # -- expectations ---------------------------------------------------------------------------

    def cmd_expect(self, _lineno: int, name: str) -> None:
        self.compare(name, "".join(line + "\n" for line in self.happened))
        self.happened = []

    def cmd_expect_lease(self, lineno: int, _args: str) -> None:
        self.compare_inline(lineno, describe(self.server.record))


SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txtar"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(path: Path) -> None:
    run_script(path, ElectionRunner)


def test_there_are_scenarios() -> None:
    assert len(SCRIPTS) >= 6


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_every_expectation_of_a_scenario_can_fail(path: Path) -> None:
    for what, broken in broken_copies(Script.parse(path.read_text()), inline=("expect-lease",)):
        with pytest.raises(ScriptError):
            ElectionRunner(broken, update=False).run()
            pytest.fail(f"{path.name} passes with a wrong {what}")


FREE_LEASE = "elector identity=node1\nwant\nreply\nreply\nexpect acquired\n"


def test_a_wrong_expectation_fails_the_script() -> None:
    script = Script.parse(FREE_LEASE + "-- acquired --\n0.000 leading: acquired\n")
    with pytest.raises(ScriptError, match="acquired differs"):
        ElectionRunner(script, update=False).run()


def test_update_mode_rewrites_the_expectations() -> None:
    script = Script.parse(FREE_LEASE + "expect-lease wrong  # a comment\n")
    ElectionRunner(script, update=True).run()
    assert script.commands[-1] == (
        "expect-lease holder=node1 duration=15 acquired=0.000 renewed=0.000 transitions=0 rv=1"
        "  # a comment"
    )
    assert script.files["acquired"].splitlines()[-1] == "0.000 leading: acquired"
