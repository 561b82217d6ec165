"""The control plane's certificates and keys, made fresh for each run and trusted nowhere else.

kube-apiserver needs a serving certificate naming every address it is dialled at, a CA that
signs client certificates (the admin's, kube-controller-manager's), and a key pair that signs
ServiceAccount tokens. Keys are ECDSA P-256 (milliseconds to make; accepted by Go, OpenSSL and
Python). Every certificate carries key usage and key identifiers: the strict X.509 checks of
current OpenSSL and Python refuse a CA without them.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Backdated an hour, so a clock slightly behind still accepts them; valid long past any lab.
_BACKDATE = datetime.timedelta(hours=1)
_VALIDITY = datetime.timedelta(days=3650)
# What a cluster's apiserver certificate names besides its addresses.
SERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _usage(ca: bool) -> x509.KeyUsage:
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


@dataclass(frozen=True)
class Pki:
    """Where the files are: ``ca.crt``, ``apiserver.crt/.key``, ``sa.key/.pub``, ``<user>.crt/.key``."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @classmethod
    def create(cls, directory: Path, server_addresses: Iterable[str]) -> Pki:
        """A CA, the apiserver's serving certificate, the admin's and kube-controller-manager's
        client certificates and the ServiceAccount signing pair."""
        pki = cls(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "l2announcer-lab-ca")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
        pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

        def issue(name: str, subject: x509.Name, usage: x509.ObjectIdentifier,
                  alt: Iterable[str] = ()) -> None:  # fmt: skip
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE)
                .not_valid_after(now + _VALIDITY)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_usage(ca=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
                )
            )
            if alt:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(_alt_names(alt)), critical=False
                )
            pki.cert(name).write_bytes(
                builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
            )
            pki.key(name).write_bytes(_key_pem(key))
            pki.key(name).chmod(0o600)

        server = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        issue("apiserver", server, ExtendedKeyUsageOID.SERVER_AUTH,
              ["127.0.0.1", *server_addresses, *SERVER_NAMES])  # fmt: skip
        for user, group in (("admin", "system:masters"),
                            ("system:kube-controller-manager", "")):  # fmt: skip
            subject = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
            if group:
                subject.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, group))
            issue(user.rsplit(":", 1)[-1], x509.Name(subject), ExtendedKeyUsageOID.CLIENT_AUTH)

        sa_key = ec.generate_private_key(ec.SECP256R1())
        pki.sa_key.write_bytes(_key_pem(sa_key))
        pki.sa_key.chmod(0o600)
        pki.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pki
