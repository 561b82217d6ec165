"""What uninstalling leaves on a node, removed: the agent's tc filters, its BPF pins and its state
files. Used by ``l2agent cleanup`` and by an agent told on SIGTERM that its DaemonSet is gone.

Only what is provably ours goes: tc filters and pins as :func:`bpf.datapath.remove_leftovers`
judges them (a pin of someone else's at our path is left, with one log line), and in the state
directory only the database and its SQLite companions. The directory itself is removed only when
that leaves it empty, so pointing ``state-dir`` at a shared directory (or ``/``) costs nothing
else in it. Every step is idempotent: a second run removes nothing and says so.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

DB_FILE = "statedb.sqlite"
STATE_FILES = (
    DB_FILE,
    f"{DB_FILE}-wal",
    f"{DB_FILE}-shm",
    f"{DB_FILE}-journal",
    f"{DB_FILE}.lock",  # the one-writer lock
)


def remove_state_files(state_dir: str) -> tuple[list[str], list[str]]:
    """Remove the state database and its companions, then the directory if that empties it.

    Returns (what was removed, what was left and why), one line each.
    """
    removed: list[str] = []
    left: list[str] = []
    directory = Path(state_dir)
    for name in STATE_FILES:
        path = directory / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(f"state file {path}")
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            if removed:  # a directory we never wrote to is not worth a line
                left.append(f"left {directory}: it holds files that are not l2announcer's")
        elif e.errno == errno.EBUSY:
            # A mount point: a hostPath volume seen from the agent's container. The host keeps
            # the (now empty) directory, on a tmpfs that a reboot clears.
            if removed:
                left.append(f"left {directory} (empty): it is a mount point")
        else:
            left.append(f"left {directory}: {os.strerror(e.errno or 0)}")
    else:
        removed.append(f"state directory {directory}")
    return removed, left


def clean_node(bpf_root: str, state_dir: str) -> tuple[list[str], list[str]]:
    """Remove this node's tc filters, pins and state files (this network namespace, ``bpf_root``,
    ``state_dir``). Returns (what was removed, what was left and why)."""
    from bpf.datapath import remove_leftovers

    removed = [_pin_line(r) for r in remove_leftovers(bpf_root)]
    files, left = remove_state_files(state_dir)
    return removed + files, left


def _pin_line(what: str) -> str:
    return f"BPF pin {what}" if what.startswith("/") else what


def agent_alive(state_dir: str, bpf_root: str) -> str | None:
    """Why an agent counts as running on this node, or None: it holds the state database's
    writer lock (an flock, released the moment the agent exits, even killed), or its datapath's
    liveness stamp is fresh. The lock alone is not enough: in a pod the state directory is the
    pod's own memory volume, which ``l2agent cleanup`` run from elsewhere on the node does not
    see; the stamp lives in the node's bpffs, shared by everyone."""
    return _holds_writer_lock(state_dir) or _stamps_liveness(bpf_root)


def _stamps_liveness(bpf_root: str) -> str | None:
    from bpf.maps import LIVENESS_MAP_NAME, LivenessMap, check_pins

    pin = check_pins(bpf_root)[LIVENESS_MAP_NAME]
    if not pin.adoptable:
        return None
    with LivenessMap.open(pin.path) as lv:
        stamp, max_age = lv.last_stamp(), lv.max_age()
    # The datapath answers while now - stamp < max age: same clock, same rule.
    age = time.monotonic_ns() - stamp
    if stamp == 0 or age >= max_age:
        return None
    return (
        f"an agent is answering on this node (its liveness stamp in {pin.path} is "
        f"{age / 1e9:.1f}s old, fresh for {(max_age - age) / 1e9:.1f}s more); stop it first"
    )


def _holds_writer_lock(state_dir: str) -> str | None:
    db = Path(state_dir) / DB_FILE
    try:
        fd = os.open(db.with_name(f"{DB_FILE}.lock"), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        return f"an agent is running on this node (pid {pid}, writing {db}); stop it first"
    finally:
        os.close(fd)
    return None


def clean_cluster(
    api_client: object,
    namespace: str,
    *,
    daemonset: str,
    leases: bool,
    wait: float,
    say: Callable[[str], None],
) -> int:
    """Uninstall's cluster part: delete the DaemonSet ``daemonset`` (if named) and wait for its
    pods to stop, then delete our leases as they become unused (released, or their holder
    stopped renewing), for up to ``wait`` seconds. Returns the exit code: 0, or 1 when something
    was left."""
    import time

    from agent.k8s.leases import KubernetesLeaseAPI
    from agent.k8s.uninstall import delete_daemonset_and_wait

    deadline = time.monotonic() + wait
    code = 0
    if daemonset and not delete_daemonset_and_wait(api_client, namespace, daemonset, wait, say):
        say(f"left daemonset {namespace}/{daemonset}: its pods did not stop within {wait:g}s")
        code = 1
    if not leases:
        return code
    api = KubernetesLeaseAPI(api_client, namespace)
    try:
        while True:
            for name in api.delete_unused(expired_at=time.time()):
                say(f"removed lease {namespace}/{name}")
            left = api.list_names()
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    finally:
        api.close()
    for name in left:
        say(f"left lease {namespace}/{name}: still held and renewed")
    return 1 if left else code
