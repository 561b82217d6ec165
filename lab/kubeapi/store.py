"""The object store: one global resourceVersion, buckets per resource, bounded change history.

Like etcd behind kube-apiserver: every write (create, update, status write, delete) takes the
next revision; the history of changes is what watches replay and what paginated or `Exact`
lists roll back through; history older than the retained window is "compacted", which is what
makes resumes from old revisions fail with 410 as on a real cluster.

Stored objects are treated as immutable once committed: writers build a new dict, readers may
hand stored dicts straight to the JSON encoder without copying. Callers do read-check-write
under `store.lock` (a Condition; waiting watchers are woken on every commit).
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped

# A non-round start, far from 0, so code that assumes small or per-object RVs breaks here.
DEFAULT_START_RV = 7_001_234
DEFAULT_HISTORY = 10_000


@dataclass(frozen=True, slots=True)
class Change:
    rv: int
    resource: str  # ResourceType.key
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj  # the new state; for DELETED the last state stamped with the delete's RV
    prev: Obj | None  # the state before (None for ADDED)


class Compacted(Exception):
    """The requested revision is older than the retained history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Store:
    def __init__(
        self, start_rv: int = DEFAULT_START_RV, history_limit: int = DEFAULT_HISTORY
    ) -> None:
        self.lock = threading.Condition(threading.RLock())
        self.rv = start_rv
        self.compacted_rv = start_rv  # changes with rv <= this are gone
        self.history_limit = history_limit
        self._history: deque[Change] = deque()
        self._history_rvs: deque[int] = deque()
        self._buckets: dict[str, dict[ObjKey, Obj]] = {}
        self.closed = False
        self.dirty = False

    # reads -----------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            return self._buckets.get(resource, {}).get((namespace, name))

    def objects(self, resource: str, namespace: str = "") -> tuple[list[Obj], int]:
        """Current objects in key order, and the revision they were read at."""
        with self.lock:
            bucket = self._buckets.get(resource, {})
            keys = sorted(k for k in bucket if not namespace or k[0] == namespace)
            return [bucket[k] for k in keys], self.rv

    def list_at(self, resource: str, namespace: str, rv: int) -> list[Obj]:
        """Objects as they were at revision `rv`, by undoing later changes."""
        with self.lock:
            if rv < self.compacted_rv:
                raise Compacted(rv, self.compacted_rv + 1)
            if rv > self.rv:
                raise ValueError("revision in the future")
            state = dict(self._buckets.get(resource, {}))
            for change in reversed(self.changes_after(rv, resource)):
                key = key_of(change.obj)
                if change.type == "ADDED":
                    state.pop(key, None)
                elif change.prev is not None:
                    state[key] = change.prev
        keys = sorted(k for k in state if not namespace or k[0] == namespace)
        return [state[k] for k in keys]

    def changes_after(self, rv: int, resource: str | None = None) -> list[Change]:
        """Changes with revision > rv, oldest first; Compacted if some are no longer kept."""
        with self.lock:
            if rv < self.compacted_rv:
                raise Compacted(rv, self.compacted_rv + 1)
            start = bisect.bisect_right(self._history_rvs, rv)
            picked = [self._history[i] for i in range(start, len(self._history))]
        if resource is None:
            return picked
        return [c for c in picked if c.resource == resource]

    def resources(self) -> list[str]:
        with self.lock:
            return list(self._buckets)

    # writes (call with self.lock held) --------------------------------------

    def commit(self, resource: str, change_type: str, obj: Obj, prev: Obj | None) -> Change:
        """Stamp `obj` with the next revision and make it the stored state (or remove it)."""
        with self.lock:
            self.rv += 1
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
            key = key_of(obj)
            bucket = self._buckets.setdefault(resource, {})
            if change_type == "DELETED":
                bucket.pop(key, None)
            else:
                bucket[key] = obj
            change = Change(self.rv, resource, change_type, obj, prev)
            self._history.append(change)
            self._history_rvs.append(self.rv)
            while len(self._history) > self.history_limit:
                dropped = self._history.popleft()
                self._history_rvs.popleft()
                self.compacted_rv = dropped.rv
            self.dirty = True
            self.lock.notify_all()
            return change

    def compact(self) -> None:
        """Forget all history: every resume from a revision before now gets 410."""
        with self.lock:
            self._history.clear()
            self._history_rvs.clear()
            self.compacted_rv = self.rv

    def drop_resource(self, resource: str) -> list[Obj]:
        with self.lock:
            return [obj for _, obj in sorted(self._buckets.get(resource, {}).items())]

    # waiting -----------------------------------------------------------------

    def wait_beyond(self, rv: int, timeout: float) -> bool:
        """Block until the store revision is past `rv` (True) or `timeout` passes (False)."""
        with self.lock:
            return (
                self.lock.wait_for(lambda: self.rv > rv or self.closed, timeout) and not self.closed
            )

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    # persistence -------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write every object and the revision atomically (temp file + rename)."""
        with self.lock:
            data = {
                "resourceVersion": self.rv,
                "buckets": {r: list(b.values()) for r, b in self._buckets.items()},
            }
            self.dirty = False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)

    def load(self, path: Path, skip_ahead: int = 1000) -> None:
        """Restore a snapshot; revisions continue `skip_ahead` past the saved one, no history."""
        data = json.loads(path.read_text())
        with self.lock:
            self._buckets = {
                resource: {key_of(o): o for o in objs} for resource, objs in data["buckets"].items()
            }
            self.rv = max(self.rv, int(data["resourceVersion"]) + skip_ahead)
            self.compact()


def key_of(obj: Obj) -> ObjKey:
    """(namespace, name): the order the store lists objects in. A tuple, not "ns/name": as a
    string "a-x/..." sorts before "a/...", and a paginated list across namespaces skipped objects.
    The API's list pagination compares these keys, so it must use this very function."""
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), meta.get("name", ""))
