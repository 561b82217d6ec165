"""statedb: tables in one SQLite file, with a global revision, change feeds that include
deletions, waiting for changes, read-only access from other processes, and a generic reconciler.

The picture::

    writer process (the agent)                          other processes (l2dbg, sqlite3)
    ---------------------------                          ---------------------------------
    Database.open(path, tables)                          ReadOnlyDatabase.open(path)
      with db.write_txn(t1, t2) as txn:                    with ro.snapshot() as snap:
          txn.upsert(t1, row)   # stamps a revision            snap.rows(t1)
          txn.delete(t2, row)   # leaves a tombstone
      -> COMMIT, then wake waiters (Condition)
      consumer = db.register_consumer("x", t1)
      consumer.changes()  # current rows, then every upsert/delete in revision order

It knows nothing about Kubernetes or BPF; the table catalogue lives in ``common.tables``.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Exports are loaded on first use: a reader (l2dbg) must not pay for the writer's imports
# (sqlite-utils alone takes ~45 ms, a third of l2dbg's start-up budget).
_EXPORTS = {
    "Change": "statedb.changes",
    "Consumer": "statedb.changes",
    "Database": "statedb.db",
    "ReadTxn": "statedb.read_txn",
    "WriteTxn": "statedb.write_txn",
    "StateDBError": "statedb.errors",
    "StateDBNotFound": "statedb.errors",
    "TableNotLockedForWriting": "statedb.errors",
    "TransactionClosed": "statedb.errors",
    "UnknownTable": "statedb.errors",
    "WriterLocked": "statedb.errors",
    "ReadOnlyDatabase": "statedb.readonly",
    "Snapshot": "statedb.readonly",
    "Status": "statedb.status",
    "StatusKind": "statedb.status",
    "Column": "statedb.table",
    "Index": "statedb.table",
    "Table": "statedb.table",
}

if TYPE_CHECKING:
    from statedb.changes import Change, Consumer
    from statedb.db import Database
    from statedb.errors import (
        StateDBError,
        StateDBNotFound,
        TableNotLockedForWriting,
        TransactionClosed,
        UnknownTable,
        WriterLocked,
    )
    from statedb.read_txn import ReadTxn
    from statedb.readonly import ReadOnlyDatabase, Snapshot
    from statedb.status import Status, StatusKind
    from statedb.table import Column, Index, Table
    from statedb.write_txn import WriteTxn


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'statedb' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Change",
    "Column",
    "Consumer",
    "Database",
    "Index",
    "ReadOnlyDatabase",
    "ReadTxn",
    "Snapshot",
    "StateDBError",
    "StateDBNotFound",
    "Status",
    "StatusKind",
    "Table",
    "TableNotLockedForWriting",
    "TransactionClosed",
    "UnknownTable",
    "WriteTxn",
    "WriterLocked",
]
