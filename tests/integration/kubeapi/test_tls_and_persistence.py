"""HTTPS with a caller-provided SSLContext, and snapshot persistence across restarts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from lab.kubeapi.server import KubeApiServer, ServerOptions


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_with_the_real_client(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with KubeApiServer(options=ServerOptions(ssl_context=context)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        configuration = client.Configuration()
        configuration.host = server.url
        configuration.ssl_ca_cert = str(cert)
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
