"""What ``l2dbg statedb`` does, without the command line: open the state database read-only,
read one snapshot, and turn rows into a ``Grid`` or JSON-able data. Used by the commands of
``dbg.statedb_cmd``, ``dbg.config_cmd`` and ``dbg.status_cmd``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from common.tables import CATALOGUE
from dbg.errors import DbgError
from dbg.options import STATE_DIR_ENV
from dbg.output import DataOutput, Grid, Line, Output, wants_rich, write_data, write_grid
from statedb import ReadOnlyDatabase, Snapshot, StateDBError, StateDBNotFound, Table
from statedb.table import quote_name

DB_FILE = "statedb.sqlite"

# Colours of well-known cells on a terminal, by column header, then by cell text.
CELL_STYLES: dict[str, dict[str, str]] = {"Selected": {"true": "green", "false": "dim"}}
STATUS_STYLES = {"done": "green", "pending": "yellow", "error": "bold red"}
STATUS_HEADER = "Status"


def db_path(state_dir: Path) -> Path:
    return state_dir / DB_FILE


def open_db(state_dir: Path) -> ReadOnlyDatabase:
    path = db_path(state_dir)
    try:
        return ReadOnlyDatabase.open(path)
    except StateDBNotFound:
        raise DbgError(
            f"no state database at {path} (is l2agent running on this node?"
            f" use --state-dir or {STATE_DIR_ENV})"
        ) from None
    except StateDBError as e:
        raise DbgError(str(e)) from None


def unknown_table(name: str) -> DbgError:
    """The one wording of an unknown table, for ``show_table`` and typer's command lookup."""
    return DbgError(f'unknown table "{name}"; known tables: {", ".join(CATALOGUE)}')


def lookup_table(name: str) -> Table[Any]:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise unknown_table(name) from None


@contextmanager
def snapshot(ro: ReadOnlyDatabase) -> Iterator[Snapshot]:
    """One read transaction; any SQLite or statedb error becomes one line."""
    try:
        with ro.snapshot() as snap:
            yield snap
    except StateDBError as e:
        raise DbgError(f"{ro.path}: {e}") from None
    except sqlite3.Error as e:
        raise DbgError(f"cannot read {ro.path}: {e}") from None


def require_table(snap: Snapshot, table: Table[Any], path: Path) -> None:
    present = snap.table_names()
    if table.name not in present:
        raise DbgError(
            f'table "{table.name}" is not in the state database at {path}'
            f" (the l2agent that wrote it has: {', '.join(present) or 'no tables'})"
        )


def read_rows(ro: ReadOnlyDatabase, table: Table[Any]) -> list[Any]:
    """The table's rows in primary-key order, from one snapshot."""
    with snapshot(ro) as snap:
        require_table(snap, table, ro.path)
        return snap.rows(table)


# -- rows -> cells -------------------------------------------------------------------------------


def table_header(table: Table[Any], *, rich: bool) -> tuple[str, ...]:
    """The reference's columns; on a terminal also the reconcile status, if the rows carry one."""
    extra = (STATUS_HEADER,) if rich and table.status_field else ()
    return (*table.header, *extra)


def table_line(table: Table[Any], row: Any, *, rich: bool, deleted: bool = False) -> Line:
    cells = tuple(table.format_row(row))
    if not rich:
        return Line(cells, deleted=deleted)
    styles = tuple(
        CELL_STYLES.get(h, {}).get(c, "") for h, c in zip(table.header, cells, strict=False)
    )
    if table.status_field:
        status = getattr(row, table.status_field)
        cells += (str(status),)
        styles += (STATUS_STYLES.get(str(status.kind), ""),)
    return Line(cells, styles, deleted)


def table_grid(table: Table[Any], rows: Sequence[Any], *, rich: bool) -> Grid:
    return Grid(table_header(table, rich=rich), [table_line(table, r, rich=rich) for r in rows])


def show_table(state_dir: Path, name: str, output: Output, stream: TextIO) -> None:
    """``l2dbg statedb <table>``: print the rows of one snapshot."""
    table = lookup_table(name)
    with open_db(state_dir) as ro:
        rows = read_rows(ro, table)
    if output in (Output.JSON, Output.YAML):
        write_data([table.to_json(r) for r in rows], output, stream)
    else:
        write_grid(table_grid(table, rows, rich=wants_rich(output, stream)), output, stream)


def dump(state_dir: Path, output: DataOutput, stream: TextIO) -> None:
    """``l2dbg statedb dump``: every table in the file, from one snapshot.

    Tables this l2dbg does not know (a newer agent) are dumped column by column.
    """
    data: dict[str, list[dict[str, Any]]] = {}
    with open_db(state_dir) as ro, snapshot(ro) as snap:
        for name in snap.table_names():
            table = CATALOGUE.get(name)
            if table is not None:
                data[name] = [table.to_json(r) for r in snap.rows(table)]
            else:
                data[name] = _raw_rows(ro.connection, name)
    write_data(data, output, stream)


def _raw_rows(conn: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    (sql_name,) = conn.execute(
        "SELECT sql_name FROM _statedb_tables WHERE name = ?", (name,)
    ).fetchone()
    cur = conn.execute(f"SELECT * FROM {quote_name(sql_name)}")
    names = [d[0] for d in cur.description]
    return [{n: json_value(v) for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]


# -- SQL query results ----------------------------------------------------------------------------


def json_value(v: Any) -> Any:
    return v.hex() if isinstance(v, bytes) else v


def sql_cell(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return "x'" + v.hex() + "'"
    return str(v)


def query(state_dir: Path, sql: str, output: Output, stream: TextIO) -> None:
    """``l2dbg statedb query``: read-only SQL against the file."""
    from dbg.query_guard import run_read_only

    with open_db(state_dir) as ro:
        names, rows = run_read_only(ro.connection, sql)
    if output in (Output.JSON, Output.YAML):
        data = [{n: json_value(v) for n, v in zip(names, r, strict=True)} for r in rows]
        write_data(data, output, stream)
    else:
        lines = [Line(tuple(sql_cell(v) for v in r)) for r in rows]
        write_grid(Grid(tuple(names), lines), output, stream)
