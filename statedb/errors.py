"""Errors a caller can act on; each message names what was wrong."""

from __future__ import annotations


class StateDBError(Exception):
    """Base class of every statedb error."""


class StateDBNotFound(StateDBError):
    """The database file does not exist (the writer has never run here)."""


class UnknownTable(StateDBError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f'unknown table "{name}"; known tables: {", ".join(known) or "(none)"}')


class TableNotLockedForWriting(StateDBError):
    def __init__(self, name: str) -> None:
        super().__init__(f'table "{name}" was not named when the write transaction began')


class TransactionClosed(StateDBError):
    def __init__(self) -> None:
        super().__init__("the write transaction was already committed or aborted")


class WriterLocked(StateDBError):
    """Another process already writes this database."""
