"""The agent's liveness and readiness over HTTP, for the kubelet's probes: ``/healthz`` and
``/readyz`` on ``127.0.0.1:<agent-health-port>``, answered from memory.

    health publisher --(its last publication: when, and every module's health)--> HealthServer
    kubelet --GET /healthz, /readyz--> HealthServer --> 200 "ok" | 503 one reason per line

An exec probe started a Python process that imported the agent's configuration and opened the
state database, about a quarter of a second of CPU each time; an answer here reads two values the
publisher already holds, so a probe costs the node next to nothing and can run often.

The rules (``agent/health_rules.py``) are those of ``l2agent --health-probe``, which reads the
same publication back from the ``health`` table: ``/healthz`` (liveness) passes while the health
publisher keeps publishing, whatever the modules' levels; ``/readyz`` (readiness) also needs no
module Degraded or still Starting.

The server listens on loopback only: the agent runs in the host network namespace, so the port is
the node's, and nothing but the kubelet (and an operator on the node) needs it. Requests are
served one at a time in the server's job, each on its own connection (HTTP/1.0): the probes are
a few requests a second at most.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from agent.health_publisher import Published
from agent.health_rules import liveness_failure, readiness_failures
from agent.runtime import Clock, HealthReporter, Job

log = logging.getLogger("l2announcer.health")

HOST = "127.0.0.1"

REQUEST_TIMEOUT = 2.0
"""Seconds a connection may take to send its request: requests are served one at a time, so a
client that connects and says nothing must not hold the probes up for long."""


class HealthServer:
    """``/healthz`` and ``/readyz`` on ``127.0.0.1:port`` (0: a free port, see ``self.port``).

    ``start()`` binds, so a port already in use fails the agent's start with one line; the
    requests are served by a runtime job until ``stop()``.
    """

    name = "health-server"

    def __init__(
        self, port: int, published: Callable[[], Published | None], *, clock: Clock
    ) -> None:
        self.port = port
        self._published = published
        self._clock = clock
        self._server: _Server | None = None
        self._wake_r, self._wake_w = -1, -1
        self.health = HealthReporter(self.name)
        self.job = Job(self.name, self._serve, wake=self._wake, health=self.health)

    # -- answers ----------------------------------------------------------------------------------

    def answer(self, path: str) -> tuple[int, str]:
        """The status and plain-text body for ``path`` (a query string is ignored)."""
        path = path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz"):
            return 404, f"no such path {path}; this server answers /healthz and /readyz\n"
        last = self._published()
        age = None if last is None else self._clock.monotonic() - last.at
        dead = liveness_failure(age)
        if dead is not None:
            return 503, dead + "\n"
        if path == "/readyz":
            assert last is not None
            failing = readiness_failures(last.health)
            if failing:
                return 503, "".join(line + "\n" for line in failing)
        return 200, "ok\n"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            server = _Server((HOST, self.port), _Handler)
        except OSError as e:
            raise RuntimeError(_bind_error(self.port, e)) from None
        server.answer = self.answer
        self._server = server
        self.port = int(server.server_address[1])
        self._wake_r, self._wake_w = os.pipe()
        self.job.start()
        log.info("serving /healthz and /readyz on %s:%d", HOST, self.port)

    def stop(self) -> None:
        self.job.stop()
        if self._server is not None:
            self._server.server_close()
            self._server = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r, self._wake_w = -1, -1

    def _wake(self) -> None:
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")

    def _serve(self, stopping: threading.Event) -> None:
        # Not socketserver's serve_forever: its shutdown() waits for a loop that has started,
        # and would hang a stop that comes before the job's thread got there; a wake pipe in the
        # same select stops this loop at once, with no polling in between.
        server = self._server
        assert server is not None
        self.health.ok(f"serving /healthz and /readyz on {HOST}:{self.port}")
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is server.socket:
                        server.handle_request()
                    else:
                        os.read(self._wake_r, 64)


def _bind_error(port: int, e: OSError) -> str:
    where = f"{HOST}:{port}"
    if e.errno == errno.EADDRINUSE:
        return (
            f"agent-health-port {port}: {where} is already in use by another process; set "
            "agent-health-port (chart: healthPort) to a free port, the probes follow it"
        )
    return f"agent-health-port {port}: cannot listen on {where}: {e.strerror or e}"


class _Server(socketserver.TCPServer):
    # A restarted agent binds again at once, while connections of the previous one linger in
    # TIME_WAIT; it never lets two processes listen on one port.
    allow_reuse_address = True
    answer: Callable[[str], tuple[int, str]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up or timed out: worth a debug line, never a traceback on stderr.
        log.debug("health request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "l2announcer"

    def do_GET(self) -> None:
        status, body = self.server.answer(self.path)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Not one log line per probe."""
