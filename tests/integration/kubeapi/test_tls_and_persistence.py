"""HTTPS with a caller-provided SSLContext, and snapshot persistence across restarts."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from lab.kubeapi.server import KubeApiServer, ServerOptions
from lab.kubeapi.tls import generate_tls_files


def test_https_with_the_real_client(tmp_path: Path) -> None:
    # The lab's certificates (a CA and a server certificate for 127.0.0.1), in a context built
    # here: the server takes whatever SSLContext its caller gives it.
    files = generate_tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    with KubeApiServer(options=ServerOptions(ssl_context=context)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        configuration = client.Configuration()
        configuration.host = server.url
        configuration.ssl_ca_cert = str(files.ca)
        api = client.ApiClient(configuration)
        core = client.CoreV1Api(api)
        core.create_node({"metadata": {"name": "n1"}})
        events = list(watch.Watch().stream(core.list_node, timeout_seconds=1))
        assert [e["object"].metadata.name for e in events] == ["n1"]
        api.close()


def test_restart_keeps_objects_and_moves_resource_versions_forward(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    options = ServerOptions(state_file=state)
    with KubeApiServer(options=options) as server:
        api = client.ApiClient(client.Configuration(host=server.url))
        core = client.CoreV1Api(api)
        node = core.create_node({"metadata": {"name": "n1", "labels": {"a": "b"}}})
        before = core.list_node().metadata.resource_version
        api.close()
    with KubeApiServer(options=options) as server:
        api = client.ApiClient(client.Configuration(host=server.url))
        core = client.CoreV1Api(api)
        kept = core.read_node("n1")
        assert kept.metadata.uid == node.metadata.uid
        assert kept.metadata.labels == {"a": "b"}
        assert int(core.list_node().metadata.resource_version) > int(before)
        created = core.create_node({"metadata": {"name": "n2"}})
        assert int(created.metadata.resource_version) > int(before)
        with pytest.raises(ApiException) as caught:
            for _ in watch.Watch().stream(core.list_node, resource_version=before):
                pass
        assert caught.value.status == 410
        api.close()
