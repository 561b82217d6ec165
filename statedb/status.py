"""Reconciliation status carried on a row (see statedb.reconciler).

The writer of a desired row sets it to Pending; the reconciler sets Done or Error, writing it back
only if the row's revision is still the one it reconciled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StatusKind(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Status:
    kind: StatusKind = StatusKind.PENDING
    error: str = ""
    updated_at: float = 0.0  # wall-clock seconds since the epoch, for display only

    @classmethod
    def pending(cls) -> Status:
        return cls(StatusKind.PENDING)

    def __str__(self) -> str:
        if self.kind is StatusKind.ERROR:
            return f"Error: {self.error}"
        return self.kind.value.capitalize()
