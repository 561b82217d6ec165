"""Table definitions: name, columns, primary key, indexes, row type and formatting, in one object.

A table's rows are frozen dataclasses. Columns are derived from the dataclass fields: plain
``int``, ``str``, ``float`` and ``bool`` fields map to one column of the same name; any other
field needs a FieldCodec (JSON text for lists, three columns for a Status, ...). The SQL schema
is therefore readable from the row type, and it is a user-facing interface: operators query it.
Every table also gets an internal ``_revision`` column, the global revision of the row's last
change.

A table's secondary indexes are queried through typed handles taken once, at import time, next to
the table: ``DEVICES_SELECTED = DEVICES.index("selected")``, then ``txn.list(DEVICES_SELECTED,
True)``. A misspelt index name fails when the table's module loads, and a misspelt handle is a
NameError that ruff and mypy see, instead of an error at the first query.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from statedb.errors import StateDBError
from statedb.status import Status, StatusKind

R = TypeVar("R")

REVISION_COLUMN = "_revision"
_PLAIN_TYPES: dict[Any, type] = {int: int, str: str, float: float, bool: int}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql_type: type  # int, str or float, as sqlite-utils takes them


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """How one dataclass field is stored: the columns it takes and how to (de)serialise it."""

    columns: tuple[Column, ...]
    encode: Callable[[Any], tuple[Any, ...]]
    decode: Callable[[tuple[Any, ...]], Any]


def json_codec(
    column: str,
    to_jsonable: Callable[[Any], Any],
    from_jsonable: Callable[[Any], Any],
) -> FieldCodec:
    """A field stored as compact JSON text in one column (lists of addresses, origins, ...)."""

    def encode(value: Any) -> tuple[Any, ...]:
        return (json.dumps(to_jsonable(value), separators=(",", ":"), sort_keys=True),)

    def decode(values: tuple[Any, ...]) -> Any:
        return from_jsonable(json.loads(values[0]))

    return FieldCodec((Column(column, str),), encode, decode)


def _encode_status(s: Status) -> tuple[Any, ...]:
    return (s.kind.value, s.error, s.updated_at)


def _decode_status(v: tuple[Any, ...]) -> Status:
    return Status(StatusKind(v[0]), v[1], v[2])


STATUS_CODEC = FieldCodec(
    (Column("status", str), Column("status_error", str), Column("status_updated_at", float)),
    _encode_status,
    _decode_status,
)


@dataclass(frozen=True, slots=True, eq=False)
class Index(Generic[R]):
    """A secondary index of ``table``: rows whose ``columns`` equal the values asked for.

    Take it from ``Table.index(name)``; a read transaction's ``list(index, *values)`` uses it.
    """

    table: Table[R]
    name: str
    columns: tuple[str, ...]
    # Built once: lookups by index run on hot paths (the announcer reads the selected devices
    # every round).
    sql_list: str

    def __repr__(self) -> str:
        return f"Index({self.table.name!r}, {self.name!r})"


def quote_name(name: str) -> str:
    """A table or column name as an SQL identifier (every statement built from names uses it)."""
    return '"' + name.replace('"', '""') + '"'


class Table(Generic[R]):
    """One table of the state database.

    ``name`` is what users type (``l2dbg statedb l2-announce``); ``sql_name`` is the SQLite table
    (``l2_announce``). ``primary_key`` and the columns of ``indexes`` (index name -> columns) name
    dataclass fields that map to plain columns; ``index(name)`` gives the handle to query one. ``header``/``format_row`` give the l2dbg table; ``to_json`` the -o json/yaml form;
    ``sort_key``, when the key's SQL order is not its natural order (IP addresses as text), gives
    the primary-key order l2dbg prints in.
    """

    def __init__(
        self,
        *,
        name: str,
        sql_name: str,
        row_type: type[R],
        primary_key: Sequence[str],
        header: Sequence[str],
        format_row: Callable[[R], Sequence[str]],
        to_json: Callable[[R], dict[str, Any]],
        indexes: Mapping[str, Sequence[str]] | None = None,
        codecs: Mapping[str, FieldCodec] | None = None,
        sort_key: Callable[[R], Any] | None = None,
        doc: str = "",
    ) -> None:
        if not dataclasses.is_dataclass(row_type):
            raise TypeError(f"{row_type!r} is not a dataclass")
        self.name = name
        self.sql_name = sql_name
        self.row_type = row_type
        self.primary_key = tuple(primary_key)
        self.header = tuple(header)
        self.format_row = format_row
        self.to_json = to_json
        index_columns = {k: tuple(v) for k, v in (indexes or {}).items()}
        self.sort_key = sort_key
        self.doc = doc
        codecs = dict(codecs or {})
        hints = typing.get_type_hints(row_type)

        self._fields: list[tuple[str, FieldCodec | None, int]] = []  # (field, codec, ncols)
        columns: list[Column] = []
        self.status_field: str | None = None
        for f in dataclasses.fields(row_type):
            hint = hints[f.name]
            codec = codecs.pop(f.name, None)
            if codec is None and hint is Status:
                codec = STATUS_CODEC
                self.status_field = f.name
            if codec is not None:
                columns.extend(codec.columns)
                self._fields.append((f.name, codec, len(codec.columns)))
            elif hint in _PLAIN_TYPES:
                columns.append(Column(f.name, _PLAIN_TYPES[hint]))
                self._fields.append((f.name, None, 1))
            else:
                raise TypeError(f"{name}: field {f.name!r} of type {hint!r} needs a FieldCodec")
        if codecs:
            raise TypeError(f"{name}: codecs for unknown fields {sorted(codecs)}")
        self._bool_fields = {f for f, _c, _n in self._fields if hints[f] is bool}
        self.columns = tuple(columns)
        self.column_names = tuple(c.name for c in columns)
        plain = {f for f, c, _n in self._fields if c is None}
        for key in (self.primary_key, *index_columns.values()):
            for k in key:
                if k not in plain:
                    raise TypeError(f"{name}: key field {k!r} must be a plain column")
        self._pk_positions = tuple(self.column_names.index(k) for k in self.primary_key)
        self._build_sql()
        self.indexes: dict[str, Index[R]] = {
            index_name: Index(self, index_name, cols, self._sql_where(cols))
            for index_name, cols in index_columns.items()
        }

    def index(self, name: str) -> Index[R]:
        """The handle of the secondary index ``name``, to take once where the table is declared."""
        try:
            return self.indexes[name]
        except KeyError:
            raise StateDBError(f'table "{self.name}" has no index "{name}"') from None

    # -- rows <-> column values ---------------------------------------------------------------

    def encode(self, row: R) -> tuple[Any, ...]:
        out: list[Any] = []
        for fname, codec, _n in self._fields:
            value = getattr(row, fname)
            if codec is None:
                out.append(int(value) if fname in self._bool_fields else value)
            else:
                out.extend(codec.encode(value))
        return tuple(out)

    def decode(self, values: Sequence[Any]) -> R:
        kwargs: dict[str, Any] = {}
        i = 0
        for fname, codec, n in self._fields:
            if codec is None:
                v = values[i]
                kwargs[fname] = bool(v) if fname in self._bool_fields else v
            else:
                kwargs[fname] = codec.decode(tuple(values[i : i + n]))
            i += n
        return self.row_type(**kwargs)

    def key_of(self, row: R) -> tuple[Any, ...]:
        return tuple(
            int(v) if isinstance(v, bool) else v
            for v in (getattr(row, k) for k in self.primary_key)
        )

    def key_from_values(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[i] for i in self._pk_positions)

    def sorted(self, rows: list[R]) -> list[R]:
        """Rows in primary-key order (as fetched, unless the table defines a sort key)."""
        return sorted(rows, key=self.sort_key) if self.sort_key else rows

    # -- generated SQL --------------------------------------------------------------------------

    def _build_sql(self) -> None:
        t = quote_name(self.sql_name)
        cols = [*self.column_names, REVISION_COLUMN]
        col_list = ", ".join(quote_name(c) for c in cols)
        pk = ", ".join(quote_name(c) for c in self.primary_key)
        where_pk = " AND ".join(f"{quote_name(c)} = ?" for c in self.primary_key)
        data = [c for c in self.column_names if c not in self.primary_key]
        self.sql_select = f"SELECT {col_list} FROM {t}"
        self.sql_order = f" ORDER BY {pk}"
        self.sql_get = f"{self.sql_select} WHERE {where_pk}"
        revision = quote_name(REVISION_COLUMN)
        self.sql_since = f"{self.sql_select} WHERE {revision} > ? ORDER BY {revision} LIMIT ?"
        if data:
            sets = ", ".join(
                f"{quote_name(c)} = excluded.{quote_name(c)}" for c in (*data, REVISION_COLUMN)
            )
            old = ", ".join(f"{t}.{quote_name(c)}" for c in data)
            new = ", ".join(f"excluded.{quote_name(c)}" for c in data)
            conflict = f"DO UPDATE SET {sets} WHERE ({old}) IS NOT ({new})"
        else:
            conflict = "DO NOTHING"
        marks = ", ".join("?" for _ in cols)
        # One statement that inserts, updates only when something differs, and reports 0 rows
        # changed for an identical rewrite, so no revision is spent on it.
        self.sql_upsert = (
            f"INSERT INTO {t} ({col_list}) VALUES ({marks}) ON CONFLICT({pk}) {conflict}"
        )
        self.sql_delete = f"DELETE FROM {t} WHERE {where_pk} RETURNING {col_list}"
        self.sql_set_if_revision = (
            f"UPDATE {t} SET "
            + ", ".join(f"{quote_name(c)} = ?" for c in (*data, REVISION_COLUMN))
            + f" WHERE {where_pk} AND {revision} = ?"
        )
        self._data_positions = tuple(self.column_names.index(c) for c in data)

    def _sql_where(self, columns: Sequence[str]) -> str:
        """The rows whose ``columns`` equal the parameters, in primary-key order."""
        where = " AND ".join(f"{quote_name(c)} = ?" for c in columns)
        return f"{self.sql_select} WHERE {where}{self.sql_order}"

    def data_values(self, values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[i] for i in self._data_positions)

    def __repr__(self) -> str:
        return f"Table({self.name!r})"
