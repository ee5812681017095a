"""``streamdag.Client`` with a bearer token and mutual TLS, on both transports, against a
server that requires both (models only: no pipeline is involved)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from serving.conftest import running_server
from serving.conftest import write_spec as write_serving_spec
from serving.fake_gateway import FakeGateway
from tls_support import Pki, make_pki

import streamdag
from streamdag.errors import Unauthenticated, Unavailable
from streamdag.serving import Server
from streamdag.serving.auth import Tokens
from streamdag.serving.tls import TlsFiles

TOKEN = "client-token-1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Server]:
    spec, _ = write_serving_spec(tmp_path_factory.mktemp("secured"))
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca)
    tokens = Tokens({"client": TOKEN})
    with running_server([spec], FakeGateway(), auth_tokens=tokens, tls=tls) as running:
        yield running


def addresses(server: Server) -> list[str]:
    return [f"127.0.0.1:{server.grpc_port}", f"https://127.0.0.1:{server.http_port}"]


@pytest.mark.parametrize("door", [0, 1], ids=["grpc", "rest"])
def test_a_token_and_client_certificate_are_presented(secured: Server, pki: Pki, door: int) -> None:
    files = {"cacert": pki.ca, "cert": pki.client_cert, "key": pki.client_key}
    with streamdag.Client(addresses(secured)[door], token=TOKEN, **files) as client:
        out = client.infer("scale", {"x": [[1.5, 2.0, 3.0]]})
        np.testing.assert_array_equal(out["y"], [[3.0, 4.0, 6.0]])
    with (
        streamdag.Client(addresses(secured)[door], **files) as anonymous,
        pytest.raises(Unauthenticated),
    ):
        anonymous.infer("scale", {"x": [[1.5, 2.0, 3.0]]})


def test_without_the_servers_ca_the_connection_fails(secured: Server) -> None:
    with (
        streamdag.Client(f"https://127.0.0.1:{secured.http_port}", token=TOKEN) as client,
        pytest.raises(Unavailable),
    ):
        client.infer("scale", {"x": [[1.5, 2.0, 3.0]]})
