"""Gratuitous ARP on takeover, in the RFC 5227 form, sent as a short burst.

The frame is an ARP *reply* to broadcast with sender IP = target IP = VIP and target MAC = sender
MAC. The last part matters: Linux only lets a gratuitous reply override a neighbour entry updated
less than ``locktime`` (1 s) ago when tha == sha (``arp_is_garp``); Cilium's tha =
broadcast is ignored then, so clients that just resolved the old holder would keep it.

An IPv6 VIP is announced the same way with an unsolicited Neighbour Advertisement
(:func:`bpf.ndp.unsolicited_na_frame`: to all nodes, S=0, O=1, our MAC in the Target link-layer
option), in bursts of the same count, but never closer together than RetransTimer (1 s), the
spacing a node keeps between its unsolicited advertisements for one address.

A burst (default 3 packets, 0.5 s apart; for IPv6 1 s apart) covers a lost first packet. :class:`GarpSender` sends
the first packet synchronously, so the caller sees its error at once and can retry with backoff
(while the map entry is already written), and leaves the rest to its scheduler loop;
:meth:`GarpSender.cancel` drops the rest when the VIP is lost mid-burst, so a former holder never
keeps announcing itself.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

from bpf.ndp import RETRANS_TIMER_S, unsolicited_na_frame

log = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
BROADCAST = b"\xff" * 6
MIN_FRAME_LEN = 60  # Ethernet minimum without FCS: the ARP payload is padded to 46 bytes

DEFAULT_GARP_COUNT = 3
DEFAULT_GARP_INTERVAL_S = 0.5


class GarpError(OSError):
    """A gratuitous ARP could not be sent; the message uses Cilium's wording, so
    existing alerts and log searches still match."""

    def __str__(self) -> str:
        # The message already carries the cause; OSError's "[Errno N] " prefix would repeat it.
        return str(self.strerror) if self.strerror else super().__str__()


def arp_frame(
    *,
    eth_dst: bytes,
    eth_src: bytes,
    op: int,
    sha: bytes,
    spa: str,
    tha: bytes,
    tpa: str,
    pad_to: int = MIN_FRAME_LEN,
) -> bytes:
    """An Ethernet/IPv4 ARP frame, zero-padded to ``pad_to`` bytes."""
    frame = (
        eth_dst
        + eth_src
        + struct.pack("!HHHBBH", ETH_P_ARP, ARPHRD_ETHER, ETH_P_IP, 6, 4, op)
        + sha
        + ipaddress.IPv4Address(spa).packed
        + tha
        + ipaddress.IPv4Address(tpa).packed
    )
    return frame.ljust(pad_to, b"\0")


def garp_frame(mac: bytes, vip: str) -> bytes:
    """The RFC 5227 announcement: reply to broadcast, spa = tpa = VIP, sha = tha = our MAC."""
    if len(mac) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
    return arp_frame(
        eth_dst=BROADCAST, eth_src=mac, op=ARPOP_REPLY, sha=mac, spa=vip, tha=mac, tpa=vip
    )


class GarpSockets:
    """Sends gratuitous ARPs over one bound AF_PACKET socket per interface, kept open.

    Opening and closing a socket per packet is correct but slow: closing a packet socket waits
    for an RCU grace period (``synchronize_net``), ~10 ms on a busy node, which made a takeover
    of 4,096 keys take minutes. A socket whose send fails (the interface went away) is dropped
    and opened again once; the interface's MAC is read from the socket on every send, so a
    changed MAC is used at once. The interface's name, resolved when its socket is opened, is
    kept with the socket (:meth:`ifname`) so callers need no syscall per packet. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, socket.socket] = {}
        self._names: dict[int, str] = {}

    def ifname(self, ifindex: int) -> str | None:
        """The name of the interface ``ifindex``'s open socket is bound to, if one is open."""
        with self._lock:
            return self._names.get(ifindex)

    def _open(self, ifindex: int) -> tuple[socket.socket, str]:
        try:
            ifname = socket.if_indextoname(ifindex)
        except OSError as e:
            raise GarpError(
                e.errno, f"gratuitous arp sender interface {ifindex} not found: {e}"
            ) from e
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as e:
            raise GarpError(e.errno, f"failed to open ARP socket: {e}") from e
        try:
            sock.bind((ifname, 0))
        except OSError as e:
            sock.close()
            raise GarpError(e.errno, f"failed to open ARP socket: {e}") from e
        return sock, ifname

    def _drop(self, ifindex: int) -> None:
        self._sockets.pop(ifindex).close()
        self._names.pop(ifindex, None)  # the index may name another interface next time

    def _send_on(self, sock: socket.socket, vip: str) -> bytes:
        _, _, _, hatype, mac = sock.getsockname()
        if hatype != ARPHRD_ETHER or len(mac) != 6:
            raise GarpError(0, "failed to open ARP socket: not an Ethernet interface")
        announce = unsolicited_na_frame if ":" in vip else garp_frame
        frame = announce(bytes(mac), vip)
        sock.send(frame)
        return frame

    def send(self, vip: str, ifindex: int) -> bytes:
        with self._lock:
            sock = self._sockets.get(ifindex)
            if sock is not None:
                try:
                    return self._send_on(sock, vip)
                except OSError:
                    # The interface went away or changed under the socket: open afresh, once,
                    # which also reports a missing interface in Cilium's words.
                    self._drop(ifindex)
            sock, name = self._open(ifindex)
            self._sockets[ifindex], self._names[ifindex] = sock, name
            try:
                return self._send_on(sock, vip)
            except OSError as e:
                self._drop(ifindex)
                if isinstance(e, GarpError):
                    raise
                raise GarpError(e.errno, f"failed to send ARP packet: {e}") from e

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets.values():
                sock.close()
            self._sockets.clear()
            self._names.clear()


class GarpSender:
    """Sends gratuitous ARP bursts: the first packet now, the rest from a scheduler loop.

    ``count`` packets ``interval_s`` apart (default 3 at 0, 0.5 and 1 s); for an IPv6 VIP
    (unsolicited Neighbour Advertisements) at least RetransTimer apart (default 0, 1 and 2 s). Errors of the later
    packets go to ``on_error(vip, ifindex, error)`` and the log; they are not retried here, the
    burst itself being the retry.

    ``on_sent(vip, ifindex, ifname)`` follows every packet sent. ``ifname`` comes from the
    sender's own sockets; with an injected ``send`` it is ``str(ifindex)``.

    The scheduler loop is :meth:`run`: the agent runs it as one of its supervised jobs (stopped by
    setting the event and calling :meth:`wake`), then calls :meth:`close`. A process without that
    runtime (the standalone loader, a benchmark) calls :meth:`start` and :meth:`stop`, which run
    the same loop in a thread of the sender's own. Without either, only first packets go out.
    """

    def __init__(
        self,
        count: int = DEFAULT_GARP_COUNT,
        interval_s: float = DEFAULT_GARP_INTERVAL_S,
        *,
        send: Callable[[str, int], object] | None = None,
        on_error: Callable[[str, int, GarpError], None] | None = None,
        on_sent: Callable[[str, int, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if count < 1:
            raise ValueError(f"gratuitous ARP count must be at least 1, got {count}")
        if interval_s < 0:
            raise ValueError(f"gratuitous ARP interval must not be negative, got {interval_s}")
        self.count = count
        self.interval_s = interval_s
        self._sockets = GarpSockets() if send is None else None
        self._send = send if send is not None else self._sockets.send  # type: ignore[union-attr]
        self._on_error = on_error
        self._on_sent = on_sent
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, str, int, int]] = []  # due, seq, vip, ifindex, gen
        self._generation: dict[tuple[str, int], int] = {}
        self._seq = 0
        self.sent = 0  # packets sent, first and later ones
        self._own_stop = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, vip: str, ifindex: int) -> None:
        """Send the first packet now (raising :class:`GarpError`), schedule the rest.

        A new burst for the same (vip, ifindex) replaces one still pending.
        """
        key = (vip, ifindex)
        with self._cond:
            gen = self._generation.get(key, 0) + 1
            self._generation[key] = gen
        self._send_one(vip, ifindex)
        if self.count == 1:
            return
        now = self._clock()
        interval = max(self.interval_s, RETRANS_TIMER_S) if ":" in vip else self.interval_s
        with self._cond:
            if self._generation.get(key) != gen:
                return  # cancelled while the first packet was in flight
            for i in range(1, self.count):
                self._seq += 1
                heapq.heappush(self._queue, (now + i * interval, self._seq, vip, ifindex, gen))
            self._cond.notify()

    def cancel(self, vip: str, ifindex: int) -> None:
        """Drop the pending packets of a burst (the VIP was lost or removed)."""
        with self._cond:
            key = (vip, ifindex)
            self._generation[key] = self._generation.get(key, 0) + 1

    def _send_one(self, vip: str, ifindex: int) -> None:
        self._send(vip, ifindex)
        with self._cond:
            self.sent += 1
        if self._on_sent is None:
            return
        name = self._sockets.ifname(ifindex) if self._sockets is not None else None
        try:
            self._on_sent(vip, ifindex, name or str(ifindex))
        except Exception:  # the packet went out: a failing observer must not look like it didn't
            log.exception("gratuitous ARP callback for %s on ifindex %d", vip, ifindex)

    def pending(self) -> int:
        with self._cond:
            return sum(
                1 for *_, vip, idx, gen in self._queue if self._generation.get((vip, idx)) == gen
            )

    def run(self, stopping: threading.Event) -> None:
        """The scheduler loop: sends the later packets of each burst when due, until ``stopping``
        is set and :meth:`wake` is called."""
        while True:
            with self._cond:
                while not stopping.is_set():
                    if self._queue:
                        wait = self._queue[0][0] - self._clock()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if stopping.is_set():
                    return
                _, _, vip, ifindex, gen = heapq.heappop(self._queue)
                if self._generation.get((vip, ifindex)) != gen:
                    continue
            try:
                self._send_one(vip, ifindex)
            except GarpError as e:
                log.warning("gratuitous ARP for %s on ifindex %d: %s", vip, ifindex, e)
                if self._on_error is not None:
                    self._on_error(vip, ifindex, e)
            except Exception:
                log.exception("gratuitous ARP for %s on ifindex %d", vip, ifindex)

    def wake(self) -> None:
        """Make :meth:`run` look at its stop event now."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Drop every pending packet and close the sockets (after :meth:`run` has returned)."""
        with self._cond:
            self._queue.clear()
        if self._sockets is not None:
            self._sockets.close()

    def start(self) -> None:
        """Run the scheduler loop in a thread of the sender's own (for processes without the
        agent's runtime). Idempotent."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._own_stop.clear()
            self._thread = threading.Thread(
                target=self.run, args=(self._own_stop,), name="l2-garp", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Drop everything pending, stop the thread :meth:`start` started, close the sockets."""
        self._own_stop.set()
        self.wake()
        with self._cond:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.close()
