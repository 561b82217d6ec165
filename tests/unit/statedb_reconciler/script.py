"""Scenario scripts for the reconciler: steps and expected results in one text file, in a small
txtar-like format, so a behaviour change reads as a diff of a script::

    # comment
    start retry_min=0.015625 prune_interval=10 initialized=false
    upsert a=1 b=2          # one transaction; rows are Pending
    fail-next update a boom # the next update of a raises "boom" (prune takes no key)
    delete b
    target-extra z=9        # the target holds something the table does not
    init                    # complete the table's initializer; waits for the prune it causes
    advance 0.015625        # fake time; waits for a round that saw it
    expect-table t1         # settle (Error counts as settled), then compare with file t1
    expect-target s1        # the target's contents
    expect-ops o1           # the operations since the previous expect-ops
    expect-health OK, 1 object(s)
    -- t1 --
    ...

``STATEDB_UPDATE_SCRIPTS=1`` (or ``SCENARIO_UPDATE=1``, as for every scenario suite) rewrites
every expectation (the files and the expect-health lines) with what the run produced instead of
failing, so a deliberate change is one command and a reviewable diff. The script format and its
runner are tests/scenario.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.runtime.clock import FakeClock
from statedb import Database
from statedb.reconciler import Config
from tests.reconciler_job import JobReconciler
from tests.scenario import ScenarioRunner, ScriptError
from tests.scenario import run_script as run_any_script
from tests.unit.statedb_reconciler.support import (
    OBJECTS,
    WAIT,
    FakeTarget,
    Obj,
    delete,
    mark_initialized,
    rows,
    upsert,
)

UPDATE_ENV = "STATEDB_UPDATE_SCRIPTS"


@dataclass
class Runner(ScenarioRunner):
    db: Database | None = None
    clock: FakeClock = field(default_factory=FakeClock)
    target: FakeTarget | None = None
    rec: JobReconciler[Obj] | None = None
    ops_seen: int = 0
    failures: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.rec is not None:
            self.rec.stop(timeout=WAIT)
        if self.db is not None:
            self.db.close()

    # -- setup and inputs -----------------------------------------------------------------------

    def cmd_start(self, _lineno: int, args: str) -> None:
        opts: dict[str, Any] = {"retry_min": 1 / 64, "error_backoff": 0.005}
        initialized = True
        for word in args.split():
            key, _, value = word.partition("=")
            if key == "initialized":
                initialized = value == "true"
            elif key in ("retry_min", "retry_max", "prune_interval"):
                opts[key] = float(value)
            else:
                raise ScriptError(f"unknown start option {key!r}")
        self.db = Database.open(None, [OBJECTS])
        with self.db.write_txn(OBJECTS) as txn:
            txn.register_initializer(OBJECTS, "sync")
            if initialized:
                txn.initializer_done(OBJECTS, "sync")
        self.target = FakeTarget(self.clock.monotonic)
        self.rec = JobReconciler(self.db, OBJECTS, self.target, Config(**opts), clock=self.clock)
        self.clock.on_advance(self.rec.wake)
        self.rec.start()
        if initialized:
            self._wait_prunes(1)

    def _started(self) -> tuple[Database, FakeTarget, JobReconciler[Obj]]:
        if self.db is None or self.target is None or self.rec is None:
            raise ScriptError("no reconciler: 'start' first")
        return self.db, self.target, self.rec

    def cmd_upsert(self, _lineno: int, args: str) -> None:
        db, _t, _r = self._started()
        pairs = [kv.partition("=") for kv in args.split()]
        upsert(db, *(Obj(key, value) for key, _eq, value in pairs))

    def cmd_delete(self, _lineno: int, args: str) -> None:
        db, _t, _r = self._started()
        delete(db, *args.split())

    def cmd_fail_next(self, _lineno: int, args: str) -> None:
        _db, target, _r = self._started()
        op, _, rest = args.partition(" ")
        if op == "prune":
            target.fail("prune", "", rest)
        elif op in ("update", "delete"):
            key, _, message = rest.partition(" ")
            target.fail(op, key, message)
        else:
            raise ScriptError(f"fail-next: unknown operation {op!r}")

    def cmd_target_extra(self, _lineno: int, args: str) -> None:
        _db, target, _r = self._started()
        with target.cond:
            for kv in args.split():
                key, _, value = kv.partition("=")
                target.state[key] = value

    def cmd_init(self, _lineno: int, _args: str) -> None:
        db, _t, rec = self._started()
        before = rec.prunes
        mark_initialized(db)
        self._wait_prunes(before + 1)

    def cmd_advance(self, _lineno: int, args: str) -> None:
        _db, _t, rec = self._started()
        self.clock.advance(float(args))
        if not rec.wait_for_round(self.clock.monotonic(), WAIT):
            raise ScriptError("no reconcile round after advancing the clock")

    def _wait_prunes(self, n: int) -> None:
        _db, _t, rec = self._started()
        if not rec.wait_for_prunes(n, WAIT):
            raise ScriptError(f"expected {n} prune(s), saw {rec.prunes}")

    # -- expectations ---------------------------------------------------------------------------

    def _settle(self) -> None:
        _db, _t, rec = self._started()
        if not rec.wait_until_reconciled(WAIT, allow_errors=True):
            raise ScriptError("the reconciler did not settle")

    def cmd_expect_table(self, _lineno: int, name: str) -> None:
        db, _t, _r = self._started()
        self._settle()
        lines = ["key value status"]
        for o in rows(db).values():
            lines.append(f"{o.key} {o.value} {o.status}")
        self.compare(name, "".join(line + "\n" for line in lines))

    def cmd_expect_target(self, _lineno: int, name: str) -> None:
        _db, target, _r = self._started()
        self._settle()
        with target.cond:
            state = sorted(target.state.items())
        self.compare(name, "".join(f"{k}={v}\n" for k, v in state))

    def cmd_expect_ops(self, _lineno: int, name: str) -> None:
        _db, target, _r = self._started()
        self._settle()
        with target.cond:
            ops = target.log[self.ops_seen :]
            self.ops_seen = len(target.log)
        self.compare(name, "".join(op + "\n" for op in ops))

    def cmd_expect_health(self, lineno: int, expected: str) -> None:
        _db, _t, rec = self._started()
        self._settle()
        self.compare_inline(lineno, str(rec.health()))


def run_script(path: Path) -> None:
    run_any_script(path, Runner, UPDATE_ENV)
