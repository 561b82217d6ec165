"""``l2dbg statedb <table> --watch``: print the table, then every row that changes as it commits.

Another process cannot join the writer's change feed, so the watcher polls cheaply: each tick
costs one ``PRAGMA data_version`` (it changes only when another connection commits); only then
does it read the table's revision, and only when that moved does it read the rows and diff them
against what it printed: a new revision on a key is an upsert, a key that is gone a deletion.
It reopens the file when the agent (re)creates it, e.g. after a restart.

Plain output keeps one tabwriter whose widths only grow, marks a deleted row with ``- `` before
its first cell and repeats the header every ``HEADER_EVERY`` rows. json prints one object per
line per change, yaml one document per change.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from common.durations import parse_interval
from dbg.errors import DbgError
from dbg.output import Line, Output, to_yaml_text, wants_rich
from dbg.render_plain import TabWriter, header_cells
from dbg.statedb_ops import db_path, open_db, require_table, snapshot, table_header, table_line
from statedb import ReadOnlyDatabase, Table
from statedb.readonly import wal_path

HEADER_EVERY = 100


def watch_interval(text: str) -> float:
    """Seconds of a ``--watch`` interval (``100ms``, ``2s``, or a bare ``2``); DbgError saying
    how to write one if ``text`` is not."""
    try:
        return parse_interval(text, "--watch interval")
    except ValueError as e:
        raise DbgError(str(e)) from None


@dataclass(frozen=True, slots=True)
class Event:
    row: Any
    revision: int
    deleted: bool


class Printer:
    """Prints batches of events in one output format, keeping alignment across batches."""

    def __init__(self, table: Table[Any], output: Output, stream: TextIO) -> None:
        self.table = table
        self.output = output
        self.stream = stream
        self.rich = wants_rich(output, stream)
        self.header = table_header(table, rich=self.rich)
        self.writer = TabWriter(remember=True)
        self.since_header: int | None = None  # None: the header has not been printed yet

    def batch(self, events: list[Event]) -> None:
        if self.output is Output.JSON:
            lines = (json.dumps(self._record(e), ensure_ascii=False) + "\n" for e in events)
            self._write("".join(lines))
        elif self.output is Output.YAML:
            self._write("".join("---\n" + to_yaml_text(self._record(e)) for e in events))
        else:
            self._table_batch(events)

    def _record(self, e: Event) -> dict[str, Any]:
        return {"Revision": e.revision, "Deleted": e.deleted, "Object": self.table.to_json(e.row)}

    def _table_batch(self, events: list[Event]) -> None:
        # Each entry: None for a header line, else a row.
        entries: list[Line | None] = []
        if self.since_header is None:
            entries.append(None)
            self.since_header = 0
        for e in events:
            if self.since_header >= HEADER_EVERY:
                entries.append(None)
                self.since_header = 0
            entries.append(table_line(self.table, e.row, rich=self.rich, deleted=e.deleted))
            self.since_header += 1
        head = header_cells(self.header)
        cells = [head if x is None else x.plain_cells() for x in entries]
        if not self.rich:
            self._write(self.writer.format(cells))
            return
        from dbg import render_rich

        render_rich.print_aligned(entries, head, self.writer.column_widths(cells), self.stream)
        self.stream.flush()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class Watcher:
    """Diffs successive snapshots of one table in another process's database."""

    def __init__(self, state_dir: Path, table: Table[Any]) -> None:
        self.state_dir = state_dir
        self.table = table
        self.ro: ReadOnlyDatabase | None = None
        self._ident: tuple[int, int] | None = None  # (inode, had a -wal) of the open file
        self._data_version: int | None = None
        self._table_revision: int | None = None
        self.known: dict[tuple[Any, ...], tuple[Any, int]] = {}

    def _file_ident(self) -> tuple[int, int] | None:
        path = db_path(self.state_dir)
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            return None
        return inode, int(wal_path(path).exists())

    def _reopen_if_replaced(self) -> bool:
        """Reopen when the file was replaced, or when a writer started on a file that was
        opened while no writer ran (such a file is opened immutable and never changes)."""
        ident = self._file_ident()
        if ident is None or self.ro is None:
            return False
        inode, live = ident
        assert self._ident is not None
        if inode == self._ident[0] and (self._ident[1] or not live):
            return False
        self.close()
        self.ro = open_db(self.state_dir)
        self._ident = ident
        self._data_version = None
        return True

    def first(self) -> list[Event]:
        """The current rows, in primary-key order; errors if the table is not there."""
        self._ident = self._file_ident()
        self.ro = open_db(self.state_dir)
        with snapshot(self.ro) as snap:
            require_table(snap, self.table, self.ro.path)
            pairs = snap.rows_with_revision(self.table)
            self._table_revision = snap.revision(self.table)
        self._data_version = self.ro.data_version()
        self.known = {self.table.key_of(r): (r, rev) for r, rev in pairs}
        return [Event(r, rev, False) for r, rev in pairs]

    def poll(self) -> list[Event]:
        """What changed since the last call: upserts in revision order, then deletions."""
        try:
            reopened = self._reopen_if_replaced()
            assert self.ro is not None
            dv = self.ro.data_version()
            if dv == self._data_version and not reopened:
                return []
            with snapshot(self.ro) as snap:
                present = snap.has_table(self.table)
                rev = snap.revision(self.table) if present else -1
                if rev == self._table_revision and not reopened:
                    self._data_version = dv
                    return []
                pairs = snap.rows_with_revision(self.table) if present else []
        except DbgError:
            # The agent is (re)creating the file: look again at the next tick.
            self._data_version = None
            return []
        self._data_version = dv
        self._table_revision = rev
        return self._diff(pairs, rev)

    def _diff(self, pairs: list[tuple[Any, int]], table_revision: int) -> list[Event]:
        current = {self.table.key_of(r): (r, rev) for r, rev in pairs}
        upserts = [
            Event(r, rev, False)
            for key, (r, rev) in current.items()
            if key not in self.known or self.known[key][1] != rev
        ]
        upserts.sort(key=lambda e: e.revision)
        # A reader in another process cannot see when a row was deleted, only that it is gone
        # by the table's current revision.
        gone = self.table.sorted([r for key, (r, _rev) in self.known.items() if key not in current])
        deletions = [Event(r, table_revision, True) for r in gone]
        self.known = current
        return upserts + deletions

    def close(self) -> None:
        if self.ro is not None:
            self.ro.close()
            self.ro = None


def watch(
    state_dir: Path,
    table: Table[Any],
    output: Output,
    interval: float,
    stream: TextIO,
    *,
    count: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print the table, then its changes every ``interval`` seconds until Ctrl-C (or ``count``
    batches, for tests)."""
    printer = Printer(table, output, stream)
    watcher = Watcher(state_dir, table)
    try:
        printer.batch(watcher.first())
        batches = 1
        while count is None or batches < count:
            sleep(interval)
            events = watcher.poll()
            if events:
                printer.batch(events)
                batches += 1
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
