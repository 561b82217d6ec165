"""The state database across processes: crash atomicity, read-only readers, the writer lock.

These use temporary files and child processes of our own, nothing else of the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from statedb import Database, ReadOnlyDatabase, StateDBNotFound, WriterLocked
from tests.unit.statedb.conftest import ITEMS, OTHERS, Item, Other

ROOT = Path(__file__).resolve().parents[3]

WRITER = textwrap.dedent(
    """
    import sys, time
    from statedb import Database
    from tests.unit.statedb.conftest import ITEMS, OTHERS, Item, Other
    path, mode = sys.argv[1], sys.argv[2]
    db = Database.open(path, [ITEMS, OTHERS])
    print("open", flush=True)
    i = 0
    while True:
        i += 1
        with db.write_txn(ITEMS, OTHERS) as txn:
            for k in range(10):
                txn.upsert(ITEMS, Item(f"k{k}", i))
            if mode == "hang" and i == 3:
                print("in-txn", flush=True)
                time.sleep(3600)  # killed here, between the two tables' writes
            txn.upsert(OTHERS, Other(1, str(i)))
        if mode == "hang":
            print(f"committed {i}", flush=True)
    """
)


def _spawn(path: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _consistent(snap_items: list[Item], others: list[Other]) -> int:
    values = {i.value for i in snap_items}
    assert len(values) == 1, f"torn read across rows: {sorted(values)}"
    (value,) = values
    assert others == [Other(1, str(value))], f"torn read across tables: {value} vs {others}"
    return value


def test_writer_killed_mid_transaction_leaves_the_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    proc = _spawn(path, "hang")
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "in-txn":
                break
        assert lines == ["open", "committed 1", "committed 2", "in-txn"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with ReadOnlyDatabase.open(path) as ro, ro.snapshot() as snap:
        assert _consistent(snap.rows(ITEMS), snap.rows(OTHERS)) == 2
    # The lock died with the process: a new writer can take over.
    Database.open(path, [ITEMS, OTHERS]).close()


def test_reader_in_another_process_sees_only_committed_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    proc = _spawn(path, "run")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open", "writer did not start"
        seen: list[int] = []
        revisions: list[int] = []
        deadline = time.monotonic() + 30
        with ReadOnlyDatabase.open(path) as ro:
            # At least 200 snapshots and several distinct commits, however slow a loaded
            # machine makes the writer.
            while len(seen) < 200 or len(set(seen)) < 3:
                assert time.monotonic() < deadline, f"writer made {len(set(seen))} commits"
                with ro.snapshot() as snap:
                    items = snap.rows(ITEMS)
                    if not items:
                        continue
                    seen.append(_consistent(items, snap.rows(OTHERS)))
                    revisions.append(snap.revision())
        assert seen == sorted(seen), "a later snapshot went back in time"
        assert revisions == sorted(revisions)
    finally:
        proc.kill()
        proc.wait()


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    with Database.open(path, [ITEMS]):
        code = (
            "import sys\n"
            "from statedb import Database, WriterLocked\n"
            "from tests.unit.statedb.conftest import ITEMS\n"
            "try:\n"
            f"    Database.open({str(path)!r}, [ITEMS])\n"
            "except WriterLocked as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert out.returncode == 3, out.stderr
        assert f"pid {os.getpid()}" in out.stdout


def test_same_process_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    with Database.open(path, [ITEMS]), pytest.raises(WriterLocked):
        Database.open(path, [ITEMS])


def test_read_only_open_creates_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    with pytest.raises(StateDBNotFound):
        ReadOnlyDatabase.open(path)
    assert list(tmp_path.iterdir()) == []
    with Database.open(path, [ITEMS]) as db, db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("a", 1))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    content = path.read_bytes()
    with ReadOnlyDatabase.open(path) as ro, ro.snapshot() as snap:
        assert snap.rows(ITEMS) == [Item("a", 1)]
        with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
            ro.connection.execute("DELETE FROM items")
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert after == before
    assert path.read_bytes() == content


def test_data_version_tells_another_process_that_something_committed(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    with Database.open(path, [ITEMS]) as db, ReadOnlyDatabase.open(path) as ro:
        v0 = ro.data_version()
        assert ro.data_version() == v0
        with db.write_txn(ITEMS) as txn:
            txn.upsert(ITEMS, Item("a"))
        assert ro.data_version() != v0


def test_revision_carries_on_across_writer_restarts(tmp_path: Path) -> None:
    path = tmp_path / "statedb.sqlite"
    with Database.open(path, [ITEMS]) as db, db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("a"))
        txn.upsert(ITEMS, Item("b"))
    with Database.open(path, [ITEMS]) as db:
        with db.read_txn() as r:
            assert r.all(ITEMS) == [], "a starting writer rebuilds its tables from the sources"
        with db.write_txn(ITEMS) as txn:
            txn.upsert(ITEMS, Item("c"))
        assert db.revision() == 3


def test_reader_opened_before_the_writer_went_live_sees_its_commits(tmp_path: Path) -> None:
    """Regression: a reader that opened the file while no writer was live (immutable) must not
    keep an unchanging view once a writer starts."""
    path = tmp_path / "statedb.sqlite"
    with Database.open(path, [ITEMS]) as db, db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("old"))
    with ReadOnlyDatabase.open(path) as ro:
        with ro.snapshot() as snap:
            assert snap.rows(ITEMS) == [Item("old")]
        v0 = ro.data_version()
        with Database.open(path, [ITEMS]) as db:
            with db.write_txn(ITEMS) as txn:
                txn.upsert(ITEMS, Item("new"))
            assert ro.data_version() != v0
            with ro.snapshot() as snap:
                assert snap.rows(ITEMS) == [Item("new")]
