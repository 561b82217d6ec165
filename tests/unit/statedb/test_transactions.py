"""Write transactions: atomic across tables, revisions, identical rewrites, misuse errors."""

from __future__ import annotations

import pytest

from statedb import (
    Database,
    StateDBError,
    TableNotLockedForWriting,
    TransactionClosed,
    UnknownTable,
)
from tests.unit.statedb.conftest import ITEMS, ITEMS_BY_VALUE, OTHERS, Item, Other


def test_commit_publishes_all_tables_at_once(db: Database) -> None:
    with db.write_txn(ITEMS, OTHERS) as txn:
        txn.upsert(ITEMS, Item("a", 1))
        txn.upsert(OTHERS, Other(1, "x"))
    with db.read_txn() as r:
        assert r.all(ITEMS) == [Item("a", 1)]
        assert r.all(OTHERS) == [Other(1, "x")]


def test_exception_rolls_back_every_table(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("keep", 1))
    before = db.revision()
    with pytest.raises(RuntimeError), db.write_txn(ITEMS, OTHERS) as txn:
        txn.upsert(ITEMS, Item("a", 1))
        txn.delete(ITEMS, Item("keep"))
        txn.upsert(OTHERS, Other(1, "x"))
        raise RuntimeError("boom")
    with db.read_txn() as r:
        assert r.all(ITEMS) == [Item("keep", 1)]
        assert r.all(OTHERS) == []
    assert db.revision() == before
    # The revisions the aborted transaction would have used are handed out again.
    with db.write_txn(OTHERS) as txn:
        txn.upsert(OTHERS, Other(2))
    assert db.revision() == before + 1


def test_abort_discards(db: Database) -> None:
    txn = db.write_txn(ITEMS)
    txn.upsert(ITEMS, Item("a"))
    txn.abort()
    with db.read_txn() as r:
        assert r.all(ITEMS) == []
    with pytest.raises(TransactionClosed):
        txn.upsert(ITEMS, Item("b"))


def test_savepoint_rolls_back_only_its_scope(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("outer", 1))
        with pytest.raises(ValueError), txn.savepoint():
            txn.upsert(ITEMS, Item("inner", 2))
            raise ValueError
        txn.upsert(ITEMS, Item("after", 3))
    with db.read_txn() as r:
        assert [i.key for i in r.all(ITEMS)] == ["after", "outer"]
        revs = [rev for _row, rev in r.all_with_revision(ITEMS)]
    assert sorted(revs) == [1, 2], "the rolled-back savepoint's revision is reused"


def test_every_changed_row_gets_a_new_strictly_increasing_revision(db: Database) -> None:
    with db.write_txn(ITEMS, OTHERS) as txn:
        txn.upsert(ITEMS, Item("a"))
        txn.upsert(OTHERS, Other(1))
        txn.upsert(ITEMS, Item("b"))
    with db.read_txn() as r:
        got = {row.key: rev for row, rev in r.all_with_revision(ITEMS)}
        assert got == {"a": 1, "b": 3}
        assert r.revision(ITEMS) == 3
        assert r.revision(OTHERS) == 2
    assert db.revision() == 3


def test_identical_rewrite_is_a_no_op(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        assert txn.upsert(ITEMS, Item("a", 1)) is True
    rev = db.revision()
    consumer = db.register_consumer("c", ITEMS)
    assert len(consumer.changes()) == 1
    with db.write_txn(ITEMS) as txn:
        assert txn.upsert(ITEMS, Item("a", 1)) is False
    assert db.revision() == rev
    assert db.revision(ITEMS) == rev
    assert consumer.changes() == []
    with db.write_txn(ITEMS) as txn:
        assert txn.upsert(ITEMS, Item("a", 2)) is True
    assert db.revision() == rev + 1


def test_writing_a_table_not_named_at_begin_is_refused(db: Database) -> None:
    with db.write_txn(ITEMS) as txn, pytest.raises(TableNotLockedForWriting, match="others"):
        txn.upsert(OTHERS, Other(1))


def test_naming_an_unknown_table_leaves_the_database_writable() -> None:
    with Database.open(None, [ITEMS]) as db:
        with pytest.raises(UnknownTable):
            db.write_txn(ITEMS, OTHERS)
        with db.write_txn(ITEMS) as txn:
            txn.upsert(ITEMS, Item("a"))
        with db.read_txn() as r:
            assert r.all(ITEMS) == [Item("a")]


def test_delete_of_missing_key_is_false_and_spends_nothing(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        assert txn.delete(ITEMS, Item("nope")) is False
    assert db.revision() == 0


def test_compare_and_swap_misses_when_the_row_changed(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("a", 1))
    with db.read_txn() as r:
        found = r.get_with_revision(ITEMS, "a")
    assert found is not None
    _row, rev = found
    with db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("a", 2))
    with db.write_txn(ITEMS) as txn:
        assert txn.compare_and_swap(ITEMS, Item("a", 99), rev) is False
    with db.read_txn() as r:
        assert r.get(ITEMS, "a") == Item("a", 2)
        now = r.get_with_revision(ITEMS, "a")
    assert now is not None
    with db.write_txn(ITEMS) as txn:
        assert txn.compare_and_swap(ITEMS, Item("a", 3), now[1]) is True
    with db.read_txn() as r:
        assert r.get(ITEMS, "a") == Item("a", 3)


def test_secondary_index_query_in_primary_key_order(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        for key, value in (("c", 1), ("a", 1), ("b", 2)):
            txn.upsert(ITEMS, Item(key, value))
    with db.read_txn() as r:
        assert [i.key for i in r.list(ITEMS_BY_VALUE, 1)] == ["a", "c"]
    with pytest.raises(StateDBError, match='no index "nope"'):
        ITEMS.index("nope")


def test_an_index_of_a_table_the_database_does_not_hold_is_refused() -> None:
    with (
        Database.open(None, [OTHERS]) as db,
        db.read_txn() as r,
        pytest.raises(UnknownTable, match='"items"'),
    ):
        r.list(ITEMS_BY_VALUE, 1)


def test_initializers_mark_the_table_initialized_when_all_are_done(db: Database) -> None:
    with db.write_txn(ITEMS) as txn:
        txn.register_initializer(ITEMS, "reflector")
        txn.register_initializer(ITEMS, "other")
    assert not db.initialized(ITEMS)
    assert db.wait_initialized(ITEMS, timeout=0.01) is False
    with db.write_txn(ITEMS) as txn:
        txn.initializer_done(ITEMS, "reflector")
    assert not db.initialized(ITEMS)
    with db.write_txn(ITEMS) as txn:
        txn.initializer_done(ITEMS, "other")
    assert db.initialized(ITEMS)
    assert db.wait_initialized(ITEMS, timeout=0) is True
    with db.write_txn(ITEMS) as txn, pytest.raises(StateDBError, match="no initializer"):
        txn.initializer_done(ITEMS, "unknown")
