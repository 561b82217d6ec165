"""Read-only SQL for ``l2dbg statedb query``.

Three lines of defence, the first one decisive: an sqlite3 authorizer that, while the operator's
statement is prepared, allows only reads (SELECT, reading columns, functions, recursive CTEs and
introspection PRAGMAs) and denies everything else, remembering what it denied so the refusal
names it; then the ``PRAGMA query_only`` and ``mode=ro`` of ``statedb.ReadOnlyDatabase``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dbg.errors import DbgError

_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
_ALLOWED.add(getattr(sqlite3, "SQLITE_RECURSIVE", 33))

_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}

# PRAGMAs that only read, whatever their argument (a table or index name).
_INTROSPECTION_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "compile_options",
    "data_version",
    "freelist_count",
    "page_count",
    "integrity_check",
    "quick_check",
}
# PRAGMAs that read without an argument and write with one.
_SETTING_PRAGMAS = {
    "user_version",
    "schema_version",
    "application_id",
    "journal_mode",
    "page_size",
    "encoding",
    "foreign_keys",
    "query_only",
}

_WHAT = {
    sqlite3.SQLITE_INSERT: "INSERT into",
    sqlite3.SQLITE_UPDATE: "UPDATE of",
    sqlite3.SQLITE_DELETE: "DELETE from",
    sqlite3.SQLITE_ATTACH: "ATTACH of",
    sqlite3.SQLITE_DETACH: "DETACH of",
    sqlite3.SQLITE_PRAGMA: "PRAGMA",
    sqlite3.SQLITE_TRANSACTION: "transaction control",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT",
    sqlite3.SQLITE_ANALYZE: "ANALYZE of",
    sqlite3.SQLITE_REINDEX: "REINDEX of",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE of",
}


# CREATE TABLE, DROP VIEW, ...: named after their constants.
_DDL = {
    getattr(sqlite3, n): n.removeprefix("SQLITE_").replace("_", " ")
    for n in dir(sqlite3)
    if n.startswith(("SQLITE_CREATE_", "SQLITE_DROP_"))
}


class ReadOnlyAuthorizer:
    """The authorizer callback; ``refused`` describes what it denied."""

    def __init__(self, sql: str = "") -> None:
        self.sql = sql
        self.denied: list[tuple[int, str | None, str | None]] = []

    @property
    def refused(self) -> str | None:
        """What was denied. For DDL SQLite first asks to write its schema table (``DROP TABLE
        devices`` deletes from sqlite_master), so the statement's own words are more telling."""
        if not self.denied:
            return None
        action, arg1, arg2 = self.denied[0]
        schema = arg1 in _SCHEMA_TABLES and action in (sqlite3.SQLITE_DELETE, sqlite3.SQLITE_INSERT)
        if schema or not arg1:  # DDL, or VACUUM (an ATTACH without a name)
            words = self.sql.split()[:3]
            return " ".join([*(w.upper() for w in words[:2]), *words[2:]])
        return _describe(action, arg1, arg2)

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None
    ) -> int:
        if action in _ALLOWED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
            # SQLite itself asks this while it sets up a table-valued PRAGMA function
            # (``SELECT * FROM pragma_table_info('devices')``). A user's UPDATE of the schema
            # table is refused by SQLite anyway (no writable_schema: that PRAGMA is denied).
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 is not None:
            pragma = arg1.lower()
            if pragma in _INTROSPECTION_PRAGMAS or (pragma in _SETTING_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        self.denied.append((action, arg1, arg2))
        return sqlite3.SQLITE_DENY


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 is not None else "")
    if action == sqlite3.SQLITE_TRANSACTION:
        return f"{arg1} (transaction control)"
    what = _WHAT.get(action) or _DDL.get(action) or f"operation {action}"
    return f'{what} "{arg1}"' if arg1 else what


@contextmanager
def _authorized(conn: sqlite3.Connection, sql: str) -> Iterator[ReadOnlyAuthorizer]:
    auth = ReadOnlyAuthorizer(sql)
    conn.set_authorizer(auth)
    try:
        yield auth
    finally:
        conn.set_authorizer(None)


def run_read_only(conn: sqlite3.Connection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement that only reads; returns (column names, rows)."""
    if not sql.strip():
        raise DbgError("query failed: the query is empty")
    with _authorized(conn, sql) as auth:
        try:
            cur = conn.execute(sql)
            rows = cur.fetchall()
        except (sqlite3.Error, sqlite3.Warning) as e:
            if auth.refused is not None:
                raise DbgError(
                    f"query refused: {auth.refused} would change the database;"
                    " l2dbg statedb query only reads (SELECT, WITH, read-only PRAGMAs)"
                ) from None
            raise DbgError(f"query failed: {e}") from None
    if cur.description is None:
        raise DbgError("query failed: the statement returns no rows; use SELECT")
    return [d[0] for d in cur.description], rows
