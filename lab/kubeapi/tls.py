"""A throwaway CA and server certificate so clients talk to the test server over verified TLS.

Real agents load a CA bundle and verify the apiserver's certificate against the address they dial
(an IP SAN for ``https://127.0.0.1:6443``, a DNS SAN for ``https://localhost:6443``). The test
server therefore presents a certificate signed by a CA generated per run, naming the loopback
addresses plus whatever the lab adds (bridge IPs of simulated nodes), and every kubeconfig or
in-cluster directory carries that CA. Nothing is ever trusted system-wide.

Keys are ECDSA P-256: generated in milliseconds, accepted by Python's ssl, urllib3 and kubectl.

Usage::

    ca = CertificateAuthority.generate()
    server = ca.issue_server_certificate(extra_sans=["10.99.0.1"])
    files = write_tls_files(tmpdir, ca, server)       # ca.crt, tls.crt, tls.key
    context = server_ssl_context(files)                # for the listening socket
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Every certificate starts an hour in the past so a node clock slightly behind still accepts it.
_BACKDATE = datetime.timedelta(hours=1)
_CA_VALIDITY = datetime.timedelta(days=3650)
_SERVER_VALIDITY = datetime.timedelta(days=365)

# What a real cluster's apiserver certificate names besides its addresses; harmless on loopback
# and lets code that dials "kubernetes.default.svc" verify too.
DEFAULT_SANS: tuple[str, ...] = (
    "127.0.0.1",
    "::1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)

CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _general_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for san in sans:
        if san in seen:
            continue
        seen.add(san)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    return names


def _key_usage(ca: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA keys never encipher); a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, with PEM encodings."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def san_strings(self) -> list[str]:
        """The subjectAltName entries as strings (IP addresses and DNS names)."""
        ext = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        ips = [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
        return ips + list(ext.value.get_values_for_type(x509.DNSName))


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A self-signed CA that issues the server certificate."""

    pair: KeyPair

    @classmethod
    def generate(
        cls, common_name: str = "l2lab-ca", now: datetime.datetime | None = None
    ) -> CertificateAuthority:
        now = now or _utcnow()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(KeyPair(cert, key))

    @property
    def cert_pem(self) -> bytes:
        return self.pair.cert_pem

    def issue_server_certificate(
        self,
        extra_sans: Iterable[str] = (),
        common_name: str = "kube-apiserver",
        now: datetime.datetime | None = None,
    ) -> KeyPair:
        """A serving certificate for the loopback names plus `extra_sans` (IPs or DNS names)."""
        now = now or _utcnow()
        key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = self.pair.cert
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _SERVER_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(_general_names([*DEFAULT_SANS, *extra_sans])),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(self.pair.key, hashes.SHA256())
        )
        return KeyPair(cert, key)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where the PEM files were written."""

    directory: Path
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> TLSFiles:
        return cls(directory, directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)


def write_tls_files(directory: Path, ca: CertificateAuthority, server: KeyPair) -> TLSFiles:
    """Write ca.crt, tls.crt and tls.key (mode 0600) into `directory`, creating it."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles.in_directory(directory)
    files.ca.write_bytes(ca.cert_pem)
    files.cert.write_bytes(server.cert_pem)
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(server.key_pem)
    return files


def generate_tls_files(directory: Path, extra_sans: Iterable[str] = ()) -> TLSFiles:
    """One call for the lab: a fresh CA and server certificate written into `directory`."""
    ca = CertificateAuthority.generate()
    return write_tls_files(directory, ca, ca.issue_server_certificate(extra_sans))


def server_ssl_context(files: TLSFiles) -> ssl.SSLContext:
    """The server side for a TLS directory (the lab's)."""
    return server_context(files.cert, files.key)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side: TLS 1.2+, HTTP/1.1 over ALPN (kubectl offers h2 first; we decline it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    """A verifying client context trusting only the lab CA (for the control client and tests)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
