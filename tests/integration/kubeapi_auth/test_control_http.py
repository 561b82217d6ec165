"""The /_lab/ control surface over HTTPS with ControlClient, as `l2lab api ...` will use it.

`mounted` is a minimal TLS server mounting LabControl exactly as control.py's docstring asks
server.py to (authenticate, then hand method/path/query/body to LabControl.handle, bypassing
faults, RBAC and the request log). `real` runs the same checks against KubeApiServer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lab.kubeapi.control import ControlError, LabControl
from lab.kubeapi.control_client import ControlClient
from lab.kubeapi.security import Security
from tests.integration.kubeapi_auth.conftest import NAMESPACE, SecureCluster


def parse_query(raw: str) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for part in filter(None, raw.split("&")):
        key, _, value = part.partition("=")
        query.setdefault(unquote(key), []).append(unquote(value))
    return query


class _Mount(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _MountServer

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        security = self.server.security
        user = security.authenticator.authenticate(dict(self.headers.items()))
        if not LabControl.handles(parts.path):
            self.send_error(404)
            return
        response = security.control.handle(
            user, self.command, parts.path, parse_query(parts.query), body
        )
        payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = _serve


class _MountServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, security: Security) -> None:
        self.security = security
        super().__init__(("127.0.0.1", 0), _Mount)
        self.socket = security.ssl_context().wrap_socket(self.socket, server_side=True)


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Security, str]]:
    security = Security.create(tmp_path / "pki")
    server = _MountServer(security)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield security, f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        security.faults.clear()


def exercise(security: Security, url: str) -> None:
    admin = ControlClient(url, security.admin_token, security.tls.ca)
    node2_token = admin.create_token("serviceaccount", namespace=NAMESPACE, name="node2")
    node2 = security.authenticator.user_for_token(node2_token)
    assert node2 is not None and node2.name == "system:serviceaccount:kube-system:node2"

    rules = admin.partition(node2.name, mode="stall")
    assert len(rules) == 2
    assert admin.call("GET", "partitions") == {"users": [node2.name]}
    assert admin.heal(node2.name) == 2

    rule = admin.add_fault(
        {"type": "error", "preset": "apf-429"}, {"verb": "update", "resource": "leases"}, times=3
    )
    assert [f["id"] for f in admin.faults()] == [rule]
    admin.remove_fault(rule)
    assert admin.faults() == []

    with pytest.raises(ControlError) as bad:
        admin.add_fault({"type": "explode"})
    assert bad.value.code == 400 and "unknown effect type" in bad.value.message

    outsider = ControlClient(url, node2_token, security.tls.ca)
    with pytest.raises(ControlError) as denied:
        outsider.heal()
    assert denied.value.code == 403
    assert denied.value.message == (
        'forbidden: User "system:serviceaccount:kube-system:node2" cannot post path "/_lab/heal"'
    )
    with pytest.raises(ControlError) as anonymous:
        ControlClient(url, "bogus", security.tls.ca).faults()
    assert anonymous.value.code == 401


def test_control_surface_over_https_on_the_documented_mount(mounted: tuple[Security, str]) -> None:
    security, url = mounted
    exercise(security, url)


def test_control_surface_on_the_real_server(cluster: SecureCluster) -> None:
    probe = ControlClient(cluster.server.url, cluster.security.admin_token, cluster.security.tls.ca)
    exercise(cluster.security, cluster.server.url)
    # What it drives reaches real clients: a partition made over HTTP cuts node3 off.
    cluster.grant_leases("node3")
    node3 = cluster.node("node3")
    probe.partition(node3.user, mode="refuse")
    with pytest.raises(Exception) as err:
        node3.leases.read_namespaced_lease("x", NAMESPACE, _request_timeout=5)
    assert not isinstance(err.value, ApiException)
    probe.heal(node3.user)
    with pytest.raises(ApiException) as missing:
        client.CoordinationV1Api(node3.api).read_namespaced_lease("x", NAMESPACE)
    assert missing.value.status == 404
    assert probe.count(user=node3.user, fault="refuse") >= 1
