"""Stopping the server ends what clients hold open, as a real apiserver's shutdown does: open
watches end, and a kept-alive connection gets no more answers (the client sees it closed)."""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.kubeapi.server import KubeApiServer, ServerOptions
from lab.kubeapi.tls import client_ssl_context, generate_tls_files, server_ssl_context

WATCH = "/api/v1/namespaces/default/configmaps?watch=true"

Connect = Callable[[], http.client.HTTPConnection]


def _start(tls: bool, tmp_path: Path) -> tuple[KubeApiServer, Connect]:
    if not tls:
        plain = KubeApiServer().start()
        return plain, lambda: http.client.HTTPConnection("127.0.0.1", plain.port, timeout=30)
    files = generate_tls_files(tmp_path)
    secure = KubeApiServer(options=ServerOptions(ssl_context=server_ssl_context(files))).start()
    client_context = client_ssl_context(files.ca)
    return secure, lambda: http.client.HTTPSConnection(
        "127.0.0.1", secure.port, timeout=30, context=client_context
    )


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_stop_ends_open_watches_and_closes_kept_alive_connections(
    tls: bool, tmp_path: Path
) -> None:
    server, connect = _start(tls, tmp_path)
    idle, watcher = connect(), connect()
    try:
        # One connection kept alive after an answered request, one holding a watch open.
        idle.request("GET", "/api/v1/namespaces")
        assert idle.getresponse().read()
        watcher.request("GET", WATCH)
        stream = watcher.getresponse()
        assert stream.status == 200

        ended = threading.Event()

        def read_until_end() -> None:
            try:
                while stream.readline():
                    pass
            except OSError:
                pass
            ended.set()

        threading.Thread(target=read_until_end, daemon=True).start()
        assert not ended.wait(0.3), "the watch ended before the server stopped"
        server.stop()
        # Generous: the point is that it ends at all (the watch has no timeout of its own).
        assert ended.wait(10), "the watch stayed open after the server stopped"

        # The kept-alive connection answers nothing more.
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
            idle.request("GET", "/api/v1/namespaces")
            idle.getresponse()
    finally:
        server.stop()
        watcher.close()
        idle.close()
