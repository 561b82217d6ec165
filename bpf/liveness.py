"""The agent's heartbeat to the datapath, which stops answering when the heartbeat stops.

A loop writes ``time.monotonic_ns()`` into the pinned liveness map every second. The program
compares it with ``bpf_ktime_get_ns()`` (the same CLOCK_MONOTONIC) and stops answering once the
stamp is older than the max age (the renew deadline): a wedged or dead agent goes silent before
any other node can have acquired the lease, so two nodes never answer for one VIP.

The stamp is deliberately left in place when the stamper stops: a restarted agent adopts the
datapath and stamps again well within the max age, so answers continue across the restart.
:meth:`LivenessStamper.clear` silences the datapath at once for a planned handover.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bpf.maps import LivenessMap

log = logging.getLogger(__name__)

DEFAULT_STAMP_INTERVAL_S = 1.0


class LivenessStamper:
    """Stamps ``liveness`` every ``interval_s`` seconds while :meth:`run` runs.

    The agent runs :meth:`run` as one of its supervised jobs; a process without that runtime (the
    standalone loader, tests) calls :meth:`start` and :meth:`stop`, which run the same loop in a
    thread of the stamper's own.

    A failed write is logged and reported to ``on_error`` (e.g. to mark module health degraded);
    the loop keeps going, since the next write may succeed and a stale stamp silences the
    datapath on its own, which is the safe outcome.

    ``gate``, when given, is asked before every stamp: a thread that stamps on its own would
    vouch for an agent whose election or reconciliation loop is wedged, so the agent can tie the
    stamp to those loops' progress (e.g. "the elector ran within the last renew period").
    """

    def __init__(
        self,
        liveness: LivenessMap,
        interval_s: float = DEFAULT_STAMP_INTERVAL_S,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        on_error: Callable[[Exception], None] | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"stamp interval must be positive, got {interval_s}")
        self._liveness = liveness
        self._interval = interval_s
        self._clock = clock_ns
        self._on_error = on_error
        self._gate = gate
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runs = 0  # run() calls in progress
        self._runs_lock = threading.Lock()
        self.last_error: Exception | None = None

    def stamp_now(self) -> None:
        """One stamp, synchronously (raises on failure)."""
        self._liveness.stamp(self._clock())

    def run(self, stopping: threading.Event) -> None:
        """Stamp at once, then every interval, until ``stopping`` is set; the last stamp stays."""
        with self._runs_lock:
            self._runs += 1
        try:
            while not stopping.is_set():
                try:
                    if self._gate is not None and not self._gate():
                        # The agent says it is not making progress: let the stamp age out.
                        stopping.wait(self._interval)
                        continue
                    self.stamp_now()
                    self.last_error = None
                except Exception as e:
                    self.last_error = e
                    log.warning("liveness stamp failed: %s", e)
                    if self._on_error is not None:
                        self._on_error(e)
                stopping.wait(self._interval)
        finally:
            with self._runs_lock:
                self._runs -= 1

    @property
    def running(self) -> bool:
        """Whether the stamping loop runs (in the agent's job or the stamper's own thread)."""
        with self._runs_lock:
            if self._runs > 0:
                return True
        return self._thread is not None and self._thread.is_alive()  # started, maybe not yet in run

    def start(self) -> None:
        """Run the loop in a thread of the stamper's own. Idempotent."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="l2-liveness", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread :meth:`start` started; the last stamp stays, so the datapath answers
        until it ages out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def clear(self) -> None:
        """Stop stamping and zero the stamp: the datapath stops answering immediately."""
        self.stop()
        self._liveness.clear()
