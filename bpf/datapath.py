"""The datapath as one object the agent starts and stops: program, pinned maps, attachments, heartbeat.

Lifecycle::

    dp = Datapath(bpf_root, max_liveness_ns=renew_deadline_ns)
    dp.start()                  # compile, open-or-create + pin maps (adopting a previous agent's)
    dp.attach(ifindex)          # per selected device; idempotent; replaces a previous agent's
    dp.responder.add_if_missing(vip, ifindex)   # the l2-responder reconciler's job
    dp.start_stamping()         # once the map content is vouched for (reconciler initialised)
                                # (the agent: dp.vouch(), then dp.stamper.run(stopping) in a job)
    dp.shutdown(detach=False)   # plain exit: program, pins and last stamp stay for the next agent
    dp.shutdown(detach=True)    # feature disabled: detach everywhere, unpin

Restart without a gap, and without a stale answer: a previous agent's program stays attached and
keeps answering from the pinned maps while that agent's last stamp is younger than the max age.
``start()`` does not stamp: the keys it inherits may describe leases that have moved since, so
the new agent vouches for them (``start_stamping()``) only once its reconciler has rebuilt the
table and pruned the map. If that happens within the max age of the old agent's last stamp, ARP
is answered throughout; if it does not, the datapath goes silent, as it must for an agent that
cannot renew (it may no longer hold the leases its keys describe). ``attach()`` swaps the new
program in atomically; both programs share the pinned maps, so counters and keys carry over.
``stamp_on_start=True`` is for processes that own their map content outright (the standalone
loader, tests).

Ownership is checked, never assumed (the default BPF root is Cilium's too): ``start()`` adopts a
pin only when :func:`bpf.maps.check_pins` proves our program created it, and otherwise raises
:class:`~bpf.maps.PinConflictError` before anything is compiled, pinned or written; unpinning
(``shutdown(detach=True)``, :func:`remove_leftovers`) removes only pins that are ours; ``attach()``
refuses an interface where another program sees ARP (:class:`~bpf.attach.ForeignProgramError`),
and only our own tc filter is ever replaced or detached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from bpf import attach as tc
from bpf import program
from bpf.liveness import DEFAULT_STAMP_INTERVAL_S, LivenessStamper
from bpf.maps import (
    DEFAULT_BPF_ROOT,
    IFACES_MAP_NAME,
    LIVENESS_MAP_NAME,
    RESPONDER_MAP_NAME,
    RESPONDER_V6_MAP_NAME,
    IfaceMap,
    LivenessMap,
    PinConflictError,
    ResponderMap,
    Responders,
    ResponderV6Map,
    check_pins,
    pin_path,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_LIVENESS_NS = 10_000_000_000  # the renew deadline's default (10 s)
OWN_ROOT_EXAMPLE = "/sys/fs/bpf/l2announcer"  # suggested when the default root holds others' pins


def refuse_unusable_pins(bpf_root: str) -> None:
    """Raise :class:`PinConflictError` unless each of our pin paths is free or holds a map of ours
    with this version's layout. Reads only: a pin of someone else's is left exactly as it was."""
    for c in check_pins(bpf_root).values():
        if not c.exists or c.adoptable:
            continue
        if c.ours:
            raise PinConflictError(
                f"BPF pin {c.path}: {c.problem}; remove it (rm {c.path}, or run the agent once "
                "with enable-l2-announcements=false) and restart"
            )
        raise PinConflictError(
            f"BPF pin {c.path} is not l2announcer's: {c.problem}; left untouched. Set bpf-root to "
            f"a directory of l2announcer's own, e.g. {OWN_ROOT_EXAMPLE}"
        )


def _unpin_ours(bpf_root: str) -> list[str]:
    """Unlink our pins under ``bpf_root``; a pin of someone else's is left, with one log line."""
    removed = []
    for c in check_pins(bpf_root).values():  # all judged before any goes: see check_pins
        if not c.exists:
            continue
        if not c.ours:
            log.warning("leaving BPF pin %s alone: it is not l2announcer's (%s)", c.path, c.problem)
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(c.path)
            removed.append(c.path)
    return removed


def remove_leftovers(bpf_root: str) -> list[str]:
    """With the feature off: silence, detach and unpin what an agent of ours left behind (in this
    network namespace and under ``bpf_root``), and nothing else. Compiles nothing.

    Returns what was removed, for the caller's one log line.
    """
    liveness = check_pins(bpf_root)[LIVENESS_MAP_NAME]
    if liveness.adoptable:  # silent at once, before the filters go one by one
        with LivenessMap.open(liveness.path) as lv:
            lv.clear()
    removed = []
    for ifindex in tc.attached_ifindexes():
        try:
            if tc.detach(ifindex):
                removed.append(f"tc filter on {tc.ifname(ifindex)}")
        except tc.AttachError as e:
            log.warning("removing the responder: %s", e)
    return removed + _unpin_ours(bpf_root)


class DatapathNotStarted(RuntimeError):
    pass


class Datapath:
    """Owns the loaded program, the open maps and the liveness stamper of one agent process."""

    def __init__(
        self,
        bpf_root: str = DEFAULT_BPF_ROOT,
        max_liveness_ns: int = DEFAULT_MAX_LIVENESS_NS,
        *,
        stamp_interval_s: float = DEFAULT_STAMP_INTERVAL_S,
        stamp_on_start: bool = False,
        on_liveness_error: Callable[[Exception], None] | None = None,
        liveness_gate: Callable[[], bool] | None = None,
    ) -> None:
        if max_liveness_ns <= 0:
            raise ValueError(f"max liveness must be positive, got {max_liveness_ns} ns")
        self.bpf_root = bpf_root
        self._max_liveness_ns = max_liveness_ns
        self._stamp_interval_s = stamp_interval_s
        self._on_liveness_error = on_liveness_error
        self._stamp_on_start = stamp_on_start
        self._liveness_gate = liveness_gate
        self._lock = threading.Lock()
        self._program: program.LoadedProgram | None = None
        self._responder: Responders | None = None
        self._liveness: LivenessMap | None = None
        self._ifaces: IfaceMap | None = None
        self._stamper: LivenessStamper | None = None
        self._refused: dict[int, str] = {}  # ifindex -> why attach() refused it (logged once)
        self.compile_seconds = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Compile and load the program; open or create and pin the maps.

        Raises :class:`PinConflictError`, with nothing loaded or changed, when a pin at one of our
        paths is not ours (or is ours from a version with another layout). Does not stamp unless
        ``stamp_on_start``: see the module docstring.
        """
        with self._lock:
            if self._program is not None:
                return
            refuse_unusable_pins(self.bpf_root)
            t0 = time.monotonic()
            prog = program.load(self.bpf_root)
            self.compile_seconds = time.monotonic() - t0
            try:
                v4 = ResponderMap.open(self.path(RESPONDER_MAP_NAME))
                try:
                    v6 = ResponderV6Map.open(self.path(RESPONDER_V6_MAP_NAME))
                except BaseException:
                    v4.close()
                    raise
                self._responder = Responders(v4, v6)
                self._liveness = LivenessMap.open(self.path(LIVENESS_MAP_NAME))
                self._ifaces = IfaceMap.open(self.path(IFACES_MAP_NAME))
                self._stamper = LivenessStamper(
                    self._liveness,
                    self._stamp_interval_s,
                    on_error=self._on_liveness_error,
                    gate=self._liveness_gate,
                )
            except BaseException:
                prog.close()
                self._close_maps()
                raise
            self._program = prog
        if self._stamp_on_start:
            self.start_stamping()

    def vouch(self) -> None:
        """Vouch for the map once: write the max age and stamp now. The stamper's loop keeps the
        stamp fresh from then on (``stamper.run`` in the caller's job, or ``start_stamping``).

        The max age is written here, not at start, so a new agent never extends the validity of
        a stamp it did not write.
        """
        self.liveness.set_max_age(self._max_liveness_ns)
        self.stamper.stamp_now()

    def start_stamping(self) -> None:
        """Vouch for the map, then stamp every interval from the stamper's own thread (for
        processes without the agent's runtime). Idempotent."""
        self.vouch()
        self.stamper.start()

    def previous_stamp_age_ns(self) -> int | None:
        """How old the last stamp is (a previous agent's, before ``start_stamping``); None if never."""
        stamp = self.liveness.last_stamp()
        return None if stamp == 0 else time.monotonic_ns() - stamp

    def shutdown(self, detach: bool) -> None:
        """Stop stamping and release our handles.

        ``detach=False`` (plain exit or restart): the program stays attached, the maps pinned and
        the last stamp in place, so the datapath keeps answering until the next agent adopts it
        or the stamp ages out. ``detach=True`` (feature disabled): remove our filter from every
        interface of this namespace and unpin the maps.
        """
        with self._lock:
            if self._stamper is not None:
                if detach:
                    with contextlib.suppress(OSError):
                        self._stamper.clear()
                self._stamper.stop()
                self._stamper = None
            if detach:
                for ifindex in tc.attached_ifindexes():
                    try:
                        tc.detach(ifindex)
                    except tc.AttachError as e:
                        log.warning("shutdown: %s", e)
            if self._program is not None:
                self._program.close()
                self._program = None
            self._close_maps()
            if detach:
                _unpin_ours(self.bpf_root)

    def _close_maps(self) -> None:
        responders = (self._responder.v4, self._responder.v6) if self._responder else ()
        for m in (*responders, self._liveness, self._ifaces):
            if m is not None:
                m.close()
        self._responder = self._liveness = self._ifaces = None

    # --- attachments -----------------------------------------------------------------------

    def attach(self, ifindex: int, mac: bytes | None = None) -> None:
        """Answer on ``ifindex``: record its MAC for the program, then attach (or replace).

        Idempotent. Call again when the interface's MAC changes. The MAC is written first so the
        program never runs on an interface it has no MAC for.
        """
        prog, ifaces = self._require()
        if mac is None:
            mac = tc.link_mac(ifindex)
        self._forget_vanished_interfaces(ifaces)
        ifaces.set(ifindex, mac)
        try:
            tc.attach(ifindex, prog.fd)
        except tc.ForeignProgramError as e:
            ifaces.delete(ifindex)
            if self._refused.get(ifindex) != str(e):  # the caller retries: say it once
                log.warning("%s", e)
                self._refused[ifindex] = str(e)
            raise
        if self._refused.pop(ifindex, None) is not None:
            log.info("%s: no other program sees ARP there any more; answering", tc.ifname(ifindex))

    @staticmethod
    def _forget_vanished_interfaces(ifaces: IfaceMap) -> None:
        """Drop MACs of interfaces that no longer exist, so device churn cannot fill the map."""
        present = {index for index, _ in socket.if_nameindex()}
        for ifindex in ifaces.items():
            if ifindex not in present:
                ifaces.delete(ifindex)

    def detach(self, ifindex: int) -> bool:
        """Stop answering on ``ifindex``; False when our filter was not attached there."""
        _, ifaces = self._require()
        removed = tc.detach(ifindex)
        ifaces.delete(ifindex)
        return removed

    def attached(self) -> list[int]:
        """Interfaces of this namespace carrying our filter, including ones adopted at start."""
        return tc.attached_ifindexes()

    # --- maps and liveness -----------------------------------------------------------------

    @property
    def responder(self) -> Responders:
        if self._responder is None:
            raise DatapathNotStarted("datapath not started")
        return self._responder

    @property
    def liveness(self) -> LivenessMap:
        if self._liveness is None:
            raise DatapathNotStarted("datapath not started")
        return self._liveness

    @property
    def stamper(self) -> LivenessStamper:
        if self._stamper is None:
            raise DatapathNotStarted("datapath not started")
        return self._stamper

    def set_max_liveness(self, max_liveness_ns: int) -> None:
        """Change the max stamp age at run time (a map write, no recompile)."""
        if self.stamper.running:
            self.liveness.set_max_age(max_liveness_ns)
        elif max_liveness_ns <= 0:
            raise ValueError(f"max liveness must be positive, got {max_liveness_ns} ns")
        self._max_liveness_ns = max_liveness_ns

    def path(self, map_name: str) -> str:
        return pin_path(self.bpf_root, map_name)

    def _require(self) -> tuple[program.LoadedProgram, IfaceMap]:
        if self._program is None or self._ifaces is None:
            raise DatapathNotStarted("datapath not started")
        return self._program, self._ifaces
