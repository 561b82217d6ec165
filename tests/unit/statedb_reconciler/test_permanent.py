"""PermanentError: an Error status that is not retried until the row changes."""

from __future__ import annotations

from statedb import StatusKind
from statedb.reconciler import PermanentError
from tests.unit.statedb_reconciler.support import WAIT, Obj, rig, rows, upsert


def test_permanent_failure_is_shown_and_not_retried_until_the_row_changes() -> None:
    with rig() as r:
        original = r.target.update
        calls: list[str] = []

        def update(row: Obj) -> None:
            calls.append(row.value)
            if row.value == "v6":
                raise PermanentError("IPv6 is not supported yet")
            original(row)

        r.target.update = update  # type: ignore[method-assign]
        upsert(r.db, Obj("a", "v6"))
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        status = rows(r.db)["a"].status
        assert (status.kind, status.error) == (StatusKind.ERROR, "IPv6 is not supported yet")
        r.clock.advance(3600)  # far past any backoff: a retry would have run
        assert r.rec.wait_for_round(r.clock.monotonic(), WAIT)
        assert calls == ["v6"]
        upsert(r.db, Obj("a", "v4"))
        assert r.rec.wait_until_reconciled(WAIT)
        assert calls == ["v6", "v4"]
        assert r.target.state == {"a": "v4"}
