"""What a reconciler does to its target: three idempotent operations, so that a retry or the
replay of every row after a restart can never do harm.

They are plain synchronous callables, called from the reconciler's loop and never under the
database lock, so they may block on netlink or a BPF syscall. An operation reports failure by
raising; the exception's message becomes the row's ``Status.error`` and the row is retried
(unless the exception is a ``PermanentError``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

R_contra = TypeVar("R_contra", contravariant=True)


class PermanentError(Exception):
    """A failure that retrying cannot fix (e.g. a row of a kind the target does not support).
    The row gets an Error status with this message but is not retried until it changes."""


class Operations(Protocol[R_contra]):
    def update(self, row: R_contra) -> None:
        """Make the target hold ``row`` (create or overwrite). Called for every Pending row, and
        again on retry, so it must be idempotent."""
        ...

    def delete(self, row: R_contra) -> None:
        """Remove ``row``'s key from the target. A key the target does not have is success: the
        row may never have reached it, or an earlier attempt already removed it."""
        ...

    def prune(self, rows: Iterable[R_contra]) -> None:
        """Remove what the target holds (of ours) that is not among ``rows``, every row of the
        table. Touch nothing else: the table is the whole desired state, but only of what this
        reconciler owns."""
        ...
