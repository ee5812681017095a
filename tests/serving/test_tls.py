"""TLS on both front doors (``serve --tls-cert --tls-key [--tls-client-ca]``): unmodified
tritonclient over HTTPS and gRPC-over-TLS with the CA file, plaintext refused, client
certificates required with a client CA, and bad files refused before any port opens."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from server_support import running_server
from tls_support import Pki, make_pki
from tritonclient.utils import InferenceServerException

from streamdag.errors import ConfigError
from streamdag.pipeline import PipelineSpec
from streamdag.protocol import inference_pb2, inference_pb2_grpc
from streamdag.serving import Server
from streamdag.serving.auth import Tokens
from streamdag.serving.tls import TlsFiles

from .fake_gateway import FakeGateway

X = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineSpec, ModuleType]:
    from .conftest import write_spec

    return write_spec(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(spec: tuple[PipelineSpec, ModuleType], pki: Pki) -> Iterator[Server]:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key)
    with running_server([spec[0]], FakeGateway(), tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(spec: tuple[PipelineSpec, ModuleType], pki: Pki) -> Iterator[Server]:
    tls = TlsFiles(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca)
    with running_server([spec[0]], FakeGateway(), tls=tls, auth_tokens=Tokens({"a": "t"})) as s:
        yield s


def trusting(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def triton_http_infer(server: Server, **options: object) -> np.ndarray:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}", **options)
    try:
        x = triton_http.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(X)
        return client.infer("scale", [x], headers={"authorization": "Bearer t"}).as_numpy("y")
    finally:
        client.close()


def triton_grpc_infer(server: Server, **options: object) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}", **options)
    try:
        x = triton_grpc.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(X)
        result = client.infer(
            "scale", [x], headers={"authorization": "Bearer t"}, client_timeout=10
        )
        return result.as_numpy("y")
    finally:
        client.close()


def test_tritonclient_calls_both_doors_over_tls_with_the_ca(tls_server: Server, pki: Pki) -> None:
    ca = str(pki.ca)
    np.testing.assert_array_equal(
        triton_http_infer(tls_server, ssl=True, ssl_options={"ca_certs": ca}), X * 2
    )
    np.testing.assert_array_equal(
        triton_grpc_infer(tls_server, ssl=True, root_certificates=ca), X * 2
    )
    live = httpx.get(
        f"https://127.0.0.1:{tls_server.http_port}/v2/health/live", verify=trusting(pki)
    )
    assert live.status_code == 200


def test_plaintext_and_untrusting_clients_are_refused(tls_server: Server) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_server.http_port}/v2/health/live", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{tls_server.http_port}/v2/health/live", timeout=10)
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.grpc_port}") as channel:
        stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ServerLive(inference_pb2.ServerLiveRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_with_a_client_ca_only_clients_with_its_certificate_are_answered(
    mtls_server: Server, pki: Pki
) -> None:
    live = f"https://127.0.0.1:{mtls_server.http_port}/v2/health/live"
    with pytest.raises(httpx.TransportError):
        httpx.get(live, verify=trusting(pki), timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(live, verify=trusting(pki, pki.stranger_cert, pki.stranger_key), timeout=10)
    answered = httpx.get(live, verify=trusting(pki, pki.client_cert, pki.client_key), timeout=10)
    assert answered.status_code == 200

    ca = str(pki.ca)
    with pytest.raises(InferenceServerException):
        triton_grpc_infer(mtls_server, ssl=True, root_certificates=ca)
    with pytest.raises(InferenceServerException):
        triton_grpc_infer(
            mtls_server,
            ssl=True,
            root_certificates=ca,
            private_key=str(pki.stranger_key),
            certificate_chain=str(pki.stranger_cert),
        )
    with_cert = {"private_key": str(pki.client_key), "certificate_chain": str(pki.client_cert)}
    y = triton_grpc_infer(mtls_server, ssl=True, root_certificates=ca, **with_cert)
    np.testing.assert_array_equal(y, X * 2)
    http_options = {
        "ca_certs": ca,
        "certfile": str(pki.client_cert),
        "keyfile": str(pki.client_key),
    }
    np.testing.assert_array_equal(
        triton_http_infer(mtls_server, ssl=True, ssl_options=http_options), X * 2
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"cert": "server_cert"}, "--tls-cert needs --tls-key too"),
        ({"key": "server_key"}, "--tls-key needs --tls-cert too"),
        ({"client_ca": "ca"}, "--tls-client-ca needs --tls-cert and --tls-key"),
    ],
)
def test_tls_files_go_together(pki: Pki, files: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TlsFiles.from_settings(**{option: getattr(pki, name) for option, name in files.items()})


@pytest.mark.parametrize(
    ("key", "client_ca", "message"),
    [
        ("client_key", None, "key values mismatch"),
        ("encrypted_key", None, "is encrypted; give the key unencrypted"),
        ("server_key", "server_key", "--tls-client-ca .*: no certificate or crl found"),
    ],
)
def test_bad_tls_files_stop_the_server_before_it_listens(
    spec: tuple[PipelineSpec, ModuleType],
    pki: Pki,
    key: str,
    client_ca: str | None,
    message: str,
) -> None:
    ca = getattr(pki, client_ca) if client_ca else None
    tls = TlsFiles(cert=pki.server_cert, key=getattr(pki, key), client_ca=ca)
    with pytest.raises(ConfigError, match=message):  # noqa: SIM117
        with running_server([spec[0]], FakeGateway(), tls=tls):
            pass
