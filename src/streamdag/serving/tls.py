"""TLS for both front doors (``streamdag serve --tls-cert --tls-key [--tls-client-ca]``).

One certificate and key serve REST (HTTPS, through an ``ssl.SSLContext`` handed to
uvicorn) and gRPC (``grpc.ssl_server_credentials``). With a client CA, both doors require
a client certificate that CA signed (mutual TLS) and end the handshake of any client
without one. The files are read and checked when the server is built, so a missing file,
a key that does not match its certificate or an encrypted key is a one-line error before
any port opens.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from streamdag.errors import ConfigError
from streamdag.settings import get_settings

__all__ = ["TlsFiles"]


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """The server's PEM certificate (chain) and unencrypted key, and optionally the CA
    certificates whose client certificates it requires."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_settings(
        cls,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        client_ca: Path | None = None,
    ) -> TlsFiles | None:
        """The files given, else those of the ``STREAMDAG_SERVE_TLS_*`` settings; None
        when there are none. ``ConfigError`` for a certificate without a key (or the
        reverse), or a client CA without both."""
        settings = get_settings()
        cert = cert or settings.serve_tls_cert
        key = key or settings.serve_tls_key
        client_ca = client_ca or settings.serve_tls_client_ca
        if cert is None and key is None:
            if client_ca is not None:
                raise ConfigError(
                    "--tls-client-ca needs --tls-cert and --tls-key: client certificates "
                    "are asked for in a TLS handshake"
                )
            return None
        if cert is None or key is None:
            given, missing = (
                ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
            )
            raise ConfigError(
                f"{given} needs {missing} too (STREAMDAG_SERVE_TLS_CERT and _KEY go together)"
            )
        return cls(cert=cert, key=key, client_ca=client_ca)

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate."""
        return self.client_ca is not None

    def ssl_context(self) -> ssl.SSLContext:
        """The REST door's server context; ``ConfigError`` naming the file at fault."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._read(self.cert, "--tls-cert")
        self._read(self.key, "--tls-key")
        try:
            context.load_cert_chain(self.cert, self.key, password=self._encrypted)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"--tls-cert {self.cert} with --tls-key {self.key}: {_reason(exc)} "
                "(expected a PEM certificate and the unencrypted PEM key it was made for)"
            ) from exc
        if self.client_ca is not None:
            self._read(self.client_ca, "--tls-client-ca")
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"--tls-client-ca {self.client_ca}: {_reason(exc)} "
                    "(expected PEM CA certificates)"
                ) from exc
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def grpc_credentials(self) -> Any:
        """The gRPC door's ``grpc.ServerCredentials`` (call ``ssl_context`` first: grpc
        itself says nothing useful about a bad file until a client connects)."""
        ca = self._read(self.client_ca, "--tls-client-ca") if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self._read(self.key, "--tls-key"), self._read(self.cert, "--tls-cert"))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )

    def _encrypted(self) -> bytes:
        # Called by ssl only for an encrypted key; never prompt on a terminal for it.
        raise ConfigError(
            f"--tls-key {self.key} is encrypted; give the key unencrypted "
            "(e.g. `openssl pkey -in KEY -out KEY.pem`) and keep its file private"
        )

    @staticmethod
    def _read(path: Path, option: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot read: {exc.strerror or exc}") from exc


def _reason(exc: ssl.SSLError) -> str:
    # OpenSSL names a file it cannot parse only as "PEM lib", without a reason.
    return exc.reason.lower().replace("_", " ") if exc.reason else "not readable as PEM"
