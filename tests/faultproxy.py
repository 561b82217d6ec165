"""A TCP proxy that cuts one client off the API server while every other client keeps working.

A fault on the whole server (SIGSTOP of kube-apiserver) hits every node at once; a partition of
one node needs something between that node and the server. The proxy sits on a loopback port in
front of kube-apiserver and forwards bytes both ways without looking at them (TLS passes through:
the serving certificate names 127.0.0.1, which is where the proxy listens too). Its modes:

- ``forward``: bytes flow;
- ``stall``: nothing moves, but every connection stays open and new ones are accepted, as when a
  link silently drops packets: the client's requests hang until its own timeouts give up;
- ``reset``: every open connection is reset (RST) and the listener is closed, so new connections
  are refused (ECONNREFUSED), as from a host whose server is gone;
- ``slow(delay)``: bytes flow, but what the server sends reaches the client ``delay`` seconds
  later, as from a distant or busy server (every request takes that much longer);
- ``heal()``: back to forwarding (a stalled connection carries on with what was held, as TCP
  would deliver its retransmissions; the listener of a reset proxy comes back on the same port).

One thread drives every connection with a selector; a stalled connection is simply not read, so
what the client sends waits in the kernel's buffers.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["forward", "stall", "reset"]
CHUNK = 65536


@dataclass(eq=False)
class _Pipe:
    """One client connection and its upstream twin, with the bytes read but not yet written."""

    client: socket.socket
    upstream: socket.socket
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    held: deque[tuple[float, bytes]] = field(default_factory=deque)  # (due, bytes) to the client
    closing: bool = False  # one side ended: flush what is held, then close both


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` until told otherwise (see the module doc)."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.mode: Mode = "forward"
        self.delay = 0.0  # seconds the server's bytes are held back (slow)
        self.accepted = 0  # connections accepted, in total
        self.resets = 0  # connections reset by reset()
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._pipes: set[_Pipe] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._pipes)

    # -- control ------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listen()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stall(self) -> None:
        self._set("stall")

    def reset(self) -> None:
        """Reset every connection and refuse new ones until ``heal``."""
        self._set("reset")

    def slow(self, delay: float) -> None:
        """Forward, holding back what the server sends for ``delay`` seconds."""
        with self._lock:
            self.delay = delay
        self._set("forward")

    def heal(self) -> None:
        with self._lock:
            self.delay = 0.0
        self._set("forward")

    def stop(self) -> None:
        with self._lock:
            if self._stop:
                return
            self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for pipe in list(self._pipes):
                self._close(pipe, rst=False)
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _set(self, mode: Mode) -> None:
        with self._lock:
            previous, self.mode = self.mode, mode
            if mode == "reset":
                for pipe in list(self._pipes):
                    self._close(pipe, rst=True)
                    self.resets += 1
                if self._listener is not None:
                    self._selector.unregister(self._listener)
                    self._listener.close()
                    self._listener = None
            elif previous == "reset":
                self._listen()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- the loop -----------------------------------------------------------------------------

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.setblocking(False)
        self.port = int(s.getsockname()[1])
        self._listener = s
        self._selector.register(s, selectors.EVENT_READ, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    return
                due = self._update_interest()
            for key, events in self._selector.select(timeout=min(1.0, due - time.monotonic())):
                with self._lock:
                    if self._stop:
                        return
                    self._handle(key, events)

    def _update_interest(self) -> float:
        """Which sockets to watch for what: nothing of a connection while stalled; reading only
        while the other direction's buffer is drained (back-pressure), writing while not.
        Returns when the next held-back bytes are due (monotonic)."""
        now = time.monotonic()
        next_due = now + 1.0
        for pipe in list(self._pipes):
            while self.mode == "forward" and pipe.held and pipe.held[0][0] <= now:
                pipe.to_client += pipe.held.popleft()[1]
            if pipe.held:
                next_due = min(next_due, pipe.held[0][0])
            for sock, inbound, outbound in (
                (pipe.client, pipe.to_client, pipe.to_upstream),
                (pipe.upstream, pipe.to_upstream, pipe.to_client),
            ):
                events = 0
                if self.mode == "forward":
                    held = sock is pipe.upstream and pipe.held
                    if not outbound and not held and not pipe.closing:
                        events |= selectors.EVENT_READ
                    if inbound:
                        events |= selectors.EVENT_WRITE
                self._interest(sock, events, pipe)
            if (
                self.mode == "forward"
                and pipe.closing
                and not pipe.to_client
                and not pipe.to_upstream
                and not pipe.held
            ):
                self._close(pipe, rst=False)
        return next_due

    def _interest(self, sock: socket.socket, events: int, pipe: _Pipe) -> None:
        registered = sock in self._selector.get_map()
        if events and registered:
            self._selector.modify(sock, events, pipe)
        elif events:
            self._selector.register(sock, events, pipe)
        elif registered:
            self._selector.unregister(sock)

    def _handle(self, key: selectors.SelectorKey, events: int) -> None:
        sock = key.fileobj
        if sock is self._wake_r:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
            return
        if sock is self._listener:
            self._accept()
            return
        pipe = key.data
        if not isinstance(pipe, _Pipe) or pipe not in self._pipes or self.mode != "forward":
            return
        assert isinstance(sock, socket.socket)
        inbound = pipe.to_client if sock is pipe.client else pipe.to_upstream
        outbound = pipe.to_upstream if sock is pipe.client else pipe.to_client
        try:
            if events & selectors.EVENT_WRITE and inbound:
                sent = sock.send(inbound)
                del inbound[:sent]
            if events & selectors.EVENT_READ:
                data = sock.recv(CHUNK)
                if data and sock is pipe.upstream and self.delay > 0:
                    pipe.held.append((time.monotonic() + self.delay, data))
                elif data:
                    outbound += data
                else:
                    pipe.closing = True
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(pipe, rst=True)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2.0)
        except OSError:
            _rst(client)  # the server is gone: so is this connection
            return
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pipes.add(_Pipe(client, upstream))
        self.accepted += 1

    def _close(self, pipe: _Pipe, rst: bool) -> None:
        self._pipes.discard(pipe)
        for s in (pipe.client, pipe.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            if rst:
                _rst(s)
            else:
                s.close()


def _rst(s: socket.socket) -> None:
    """Close with a TCP reset instead of a FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
