"""Credentials of a secured local broker: a CA, a broker certificate, a SCRAM user.

Everything lives in ``<data-dir>/security/``, made on the first secured start and reused
after:

    ca.pem              the CA certificate clients trust (``ssl.ca.location``)
    ca-key.pem          the CA's private key (mode 0600), to sign more certificates by hand
    broker.pem          the brokers' private key, certificate and the CA (mode 0600): one
                        certificate for every node, valid for IP:127.0.0.1 and DNS:localhost
    client.properties   what a client needs, password included (mode 0600)

The password is drawn once, written only to ``client.properties`` and the nodes'
``server.properties`` (both 0600), and handed to ``kafka-storage format`` pre-salted, so
it is never on a command line, in a log or on the terminal.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streamdag.errors import BrokerStartFailed
from streamdag.kafka.connection import read_properties

__all__ = [
    "SCRAM_MECHANISM",
    "USERNAME",
    "SecurityFiles",
    "client_settings",
    "scram_credential",
]

SCRAM_MECHANISM = "SCRAM-SHA-512"
USERNAME = "streamdag"
_SCRAM_ITERATIONS = 8192
_VALID_FOR = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class SecurityFiles:
    """The credential files of one data dir."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca-key.pem"

    @property
    def broker_pem(self) -> Path:
        return self.folder / "broker.pem"

    @property
    def client_properties(self) -> Path:
        return self.folder / "client.properties"

    def ensure(self, bootstrap: str, *, new: bool) -> str:
        """Make the CA and the broker certificate if missing, and the password if ``new``
        (storage not yet formatted, so the SCRAM user can still be added); (re)write
        ``client.properties`` for ``bootstrap``; return the password."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.ca_cert.exists() and self.broker_pem.exists()):
            _write_certificates(self)
        password = ""
        if self.client_properties.exists():
            password = read_properties(self.client_properties).get("sasl.password", "")
        if not password:
            if not new:
                raise BrokerStartFailed(
                    f"{self.client_properties} is missing or has no sasl.password, and the "
                    "broker's SCRAM user was stored with it; start afresh in another --data-dir"
                )
            password = secrets.token_urlsafe(24)
        settings = client_settings(bootstrap, password=password, ca=self.ca_cert)
        write_private(self.client_properties, "".join(f"{k}={v}\n" for k, v in settings.items()))
        return password


def client_settings(bootstrap: str, *, password: str, ca: Path) -> dict[str, str]:
    """librdkafka settings of a SASL_SSL client (the keys of ``client.properties``)."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": SCRAM_MECHANISM,
        "sasl.username": USERNAME,
        "sasl.password": password,
        "ssl.ca.location": str(ca.resolve()),
    }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def scram_credential(password: str) -> str:
    """The ``--add-scram`` argument of ``kafka-storage format`` for the user, pre-salted.

    SCRAM's salted password is PBKDF2-HMAC-SHA-512 of the password (RFC 5802 ``Hi``);
    Kafka derives the stored and server keys from it as it would from the password.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _SCRAM_ITERATIONS)
    return (
        f"{SCRAM_MECHANISM}=[name={USERNAME},iterations={_SCRAM_ITERATIONS},"
        f'salt="{base64.b64encode(salt).decode()}",'
        f'saltedpassword="{base64.b64encode(salted).decode()}"]'
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streamdag local broker"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # the form Kafka's PEM key store reads
        serialization.NoEncryption(),
    )


def _write_certificates(files: SecurityFiles) -> None:
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + _VALID_FOR

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("streamdag local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    write_private(files.ca_key, _pem_key(ca_key).decode())
    write_private(
        files.broker_pem,
        (_pem_key(key) + cert.public_bytes(serialization.Encoding.PEM) + ca_pem).decode(),
    )
    files.ca_cert.write_bytes(ca_pem)
