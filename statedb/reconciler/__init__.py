"""A generic reconciler: pushes the rows of a table whose rows carry a ``Status`` into a target
(a BPF map, the kernel) through three user operations, and writes Done/Error back on each row.

Modelled on cilium/statedb's ``reconciler`` (incremental processing from the change feed, status
committed with a compare-and-swap on the reconciled revision, per-row exponential backoff, prune
after initialization). See ``reconciler.py`` for the loop, ``config.py`` for every setting.
The reconciler starts no thread: its owner runs ``Reconciler.run(stopping)`` under its own
supervision and calls ``wake()`` to stop it.
"""

from statedb.reconciler.clock import Clock
from statedb.reconciler.config import Config
from statedb.reconciler.operations import Operations, PermanentError
from statedb.reconciler.reconciler import Reconciler, ReconcilerHealth
from statedb.reconciler.retries import RetryQueue, backoff

__all__ = [
    "Clock",
    "Config",
    "Operations",
    "PermanentError",
    "Reconciler",
    "ReconcilerHealth",
    "RetryQueue",
    "backoff",
]
