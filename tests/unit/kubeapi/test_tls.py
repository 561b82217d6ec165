"""The generated CA and server certificate: SANs, chain, and a real handshake in memory."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from lab.kubeapi.tls import (
    CertificateAuthority,
    client_ssl_context,
    generate_tls_files,
    server_ssl_context,
)


def test_server_certificate_names_loopback_and_extra_sans() -> None:
    ca = CertificateAuthority.generate()
    server = ca.issue_server_certificate(["10.99.0.1", "node-gw.lab", "127.0.0.1"])
    sans = server.san_strings()
    for name in (
        "127.0.0.1",
        "::1",
        "10.99.0.1",
        "localhost",
        "node-gw.lab",
        "kubernetes.default.svc",
    ):
        assert name in sans
    assert sans.count("127.0.0.1") == 1
    ext = server.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.99.0.1" not in ext.get_values_for_type(x509.DNSName)  # an IP SAN, not a DNS one


def test_server_certificate_is_signed_by_the_ca_and_is_not_a_ca() -> None:
    ca = CertificateAuthority.generate()
    server = ca.issue_server_certificate()
    loaded_ca = x509.load_pem_x509_certificate(ca.cert_pem)
    loaded = x509.load_pem_x509_certificate(server.cert_pem)
    loaded.verify_directly_issued_by(loaded_ca)
    assert loaded_ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not loaded.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = loaded.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in list(usage)


def test_another_ca_does_not_verify_it() -> None:
    server = CertificateAuthority.generate().issue_server_certificate()
    other = CertificateAuthority.generate()
    try:
        server.cert.verify_directly_issued_by(other.pair.cert)
    except Exception:
        return
    raise AssertionError("a certificate verified against a CA that did not sign it")


def test_files_are_written_with_a_private_key_file(tmp_path: Path) -> None:
    files = generate_tls_files(tmp_path / "pki", ["10.0.0.1"])
    assert files.ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert files.cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert files.key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert files.key.stat().st_mode & 0o777 == 0o600


def _handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str
) -> ssl.SSLObject:
    """A TLS handshake through memory BIOs: no sockets involved."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if done[name]:
                continue
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return client
    raise AssertionError("handshake did not finish")


def test_client_verifies_the_server_by_ip_and_name(tmp_path: Path) -> None:
    files = generate_tls_files(tmp_path, ["10.99.0.7"])
    server_ctx = server_ssl_context(files)
    for host in ("127.0.0.1", "localhost", "10.99.0.7"):
        client = _handshake(server_ctx, client_ssl_context(files.ca), host)
        assert client.version() in ("TLSv1.2", "TLSv1.3")


def test_client_rejects_a_name_not_in_the_certificate(tmp_path: Path) -> None:
    files = generate_tls_files(tmp_path)
    try:
        _handshake(server_ssl_context(files), client_ssl_context(files.ca), "10.1.2.3")
    except ssl.SSLCertVerificationError as err:
        assert "10.1.2.3" in str(err) or "mismatch" in str(err).lower()
        return
    raise AssertionError("hostname verification accepted an address not in the SANs")
