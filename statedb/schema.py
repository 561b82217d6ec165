"""SQL schema: the internal bookkeeping tables and the creation of user tables (via sqlite-utils).

Internal tables (all prefixed ``_statedb_``; documented in docs/statedb.md):
- ``_statedb_meta(key, value)``: ``revision`` (global, never goes back), ``writer_pid``,
  ``schema_version``.
- ``_statedb_tables(name, sql_name, revision, initialized, columns)``: one row per table, so a
  reader in another process can find tables and detect a change to one with a single query.
- ``_statedb_graveyard(tbl, pk, revision, row)``: tombstones of deleted rows, kept while a change
  consumer still needs them.
- ``_statedb_initializers(tbl, name, done)``: who must finish an initial sync first.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import sqlite_utils

from statedb.table import REVISION_COLUMN, Table, quote_name

SCHEMA_VERSION = 1
META_TABLES = ("_statedb_meta", "_statedb_tables", "_statedb_graveyard", "_statedb_initializers")


def create_meta_tables(sdb: sqlite_utils.Database) -> None:
    sdb.table("_statedb_meta").create({"key": str, "value": int}, pk="key", if_not_exists=True)
    sdb.table("_statedb_tables").create(
        {"name": str, "sql_name": str, "revision": int, "initialized": int, "columns": str},
        pk="name",
        if_not_exists=True,
    )
    graveyard = sdb.table("_statedb_graveyard")
    graveyard.create(
        {"tbl": str, "pk": str, "revision": int, "row": str},
        pk=("tbl", "pk"),
        if_not_exists=True,
    )
    graveyard.create_index(["tbl", "revision"], if_not_exists=True)
    sdb.table("_statedb_initializers").create(
        {"tbl": str, "name": str, "done": int}, pk=("tbl", "name"), if_not_exists=True
    )
    meta = sdb.table("_statedb_meta")
    for key, value in (("revision", 0), ("writer_pid", 0), ("schema_version", SCHEMA_VERSION)):
        meta.insert({"key": key, "value": value}, ignore=True)


def create_table(sdb: sqlite_utils.Database, table: Table[Any]) -> None:
    columns: dict[str, Any] = {c.name: c.sql_type for c in table.columns}
    columns[REVISION_COLUMN] = int
    t = sdb.table(table.sql_name)
    t.create(
        columns,
        pk=table.primary_key if len(table.primary_key) > 1 else table.primary_key[0],
        not_null=set(columns),
    )
    t.create_index([REVISION_COLUMN])
    for index in table.indexes.values():
        t.create_index(list(index.columns), index_name=f"{table.sql_name}_by_{index.name}")
    sdb.table("_statedb_tables").insert(
        {
            "name": table.name,
            "sql_name": table.sql_name,
            "revision": 0,
            "initialized": 0,
            "columns": json.dumps(table.column_names),
        },
        replace=True,
    )


def drop_table(conn: sqlite3.Connection, sql_name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {quote_name(sql_name)}")
