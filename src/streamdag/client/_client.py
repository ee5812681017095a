"""``Client``: a model or pipeline of ``streamdag serve`` called from Python.

The calls go over one connection: a gRPC channel (the default, raw tensor contents: the
cheapest form for the server to decode, see docs/benchmarks.md "gRPC vs REST") or an
httpx client for REST. ``GrpcClient`` and ``RestClient`` (``runtimes.oip``) carry them
and turn every status the server answers into the error of ``streamdag.errors`` that
carries its code; nothing here inspects a status again. Jobs exist only on the REST door,
so a gRPC client takes them to ``rest_url``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from streamdag import protocol as oip
from streamdag.errors import ConfigError, DeadlineExceeded, StreamdagError
from streamdag.protocol import ParameterValue
from streamdag.runtimes import ModelMetadata
from streamdag.runtimes.oip import ClientAuth, OipClient, RestClient, open_client

__all__ = ["DEFAULT_ADDRESS", "Client", "Inputs", "Outputs", "Protocol", "as_array"]

DEFAULT_ADDRESS: Final = "127.0.0.1:8081"
"""``streamdag serve``'s gRPC port."""

Inputs = Mapping[str, NDArray[Any] | Sequence[Any]]
"""Tensors by name: numpy arrays, or (nested) lists of numbers, strings or booleans."""
Outputs = dict[str, NDArray[Any]]
"""Tensors by name; BYTES tensors are object arrays of ``bytes``."""
Protocol = Literal["grpc", "rest"]

_JOB_POLL_S: Final = 0.2


class Client:
    """Calls the models and pipelines of a ``streamdag serve``.

    ``address`` is ``host:port`` (or ``grpc://host:port``) for gRPC, or
    ``http(s)://host:port`` for REST (``protocol`` says which when the address has no
    scheme: ``host:port`` with ``protocol="rest"`` is http, or https with TLS files).
    ``token`` is sent as ``authorization: Bearer``;
    ``cacert`` (the PEM CA that signed the server's certificate) or ``cert`` and ``key``
    (a client certificate, for a server started with ``--tls-client-ca``) make the
    connection TLS. ``timeout`` (s) bounds each call unless the call gives its own.
    ``rest_url`` is the server's REST address, for jobs when ``address`` is gRPC.

    Every failure is an error of ``streamdag.errors``: ``ModelNotFound``-like
    ``NotFound``, ``InvalidInput`` for input the server refused, ``Unauthenticated``,
    ``Unavailable`` (no connection, not ready), ``DeadlineExceeded``, ``ModelError``...
    Use it as a context manager, or call ``close()``. One client may be shared by threads.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        protocol: Protocol | None = None,
        token: str | None = None,
        cacert: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        timeout: float = 60.0,
        rest_url: str | None = None,
    ) -> None:
        self.auth = ClientAuth(token=token, cacert=_path(cacert), cert=_path(cert), key=_path(key))
        self.timeout = timeout
        if protocol is None:
            protocol = "rest" if address.startswith(("http://", "https://")) else "grpc"
        self.protocol: Protocol = protocol
        self._conn: OipClient = open_client(self.protocol, address, self.auth)
        self._rest: RestClient | None = None
        if isinstance(self._conn, RestClient):
            self._rest = self._conn
        elif rest_url is not None:
            rest = open_client("rest", rest_url, self.auth)
            assert isinstance(rest, RestClient)  # what open_client builds for REST
            self._rest = rest

    # -- inference ---------------------------------------------------------------------
    def infer(
        self,
        name: str,
        inputs: Inputs,
        *,
        outputs: Sequence[str] = (),
        id: str = "",
        parameters: Mapping[str, ParameterValue] | None = None,
        version: str = "",
        timeout: float | None = None,
    ) -> Outputs:
        """Run the model or pipeline ``name`` on ``inputs``; its outputs (only those
        named in ``outputs``, if any). Lists become arrays as ``streamdag infer``'s
        shorthand reads them: floats FP32, integers INT64, strings BYTES."""
        request = self.request(name, inputs, outputs=outputs, id=id, parameters=parameters)
        request.model_version = version
        return oip.decode_response(self.infer_request(request, timeout=timeout))

    def infer_request(
        self, request: oip.ModelInferRequest, *, timeout: float | None = None
    ) -> oip.ModelInferResponse:
        """Send an OIP request message as it is; the response message."""
        return self._conn.infer(request, self._timeout(timeout))

    def request(
        self,
        name: str,
        inputs: Inputs,
        *,
        outputs: Sequence[str] = (),
        id: str = "",
        parameters: Mapping[str, ParameterValue] | None = None,
    ) -> oip.ModelInferRequest:
        """The request ``infer`` sends: raw contents over gRPC, typed over REST (JSON)."""
        arrays = {key: as_array(value) for key, value in inputs.items()}
        return oip.encode_request(
            name,
            arrays,
            id=id,
            raw=self.protocol == "grpc",
            parameters=parameters,
            outputs=outputs,
        )

    # -- jobs --------------------------------------------------------------------------
    def submit_job(
        self,
        pipeline: str,
        inputs: Inputs,
        *,
        id: str = "",
        parameters: Mapping[str, ParameterValue] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Start ``inputs`` through ``pipeline`` as an asynchronous job; its id (``id``,
        or one the server chose). The result waits in Kafka for ``job_result``."""
        body = oip.request_to_json(self.request(pipeline, inputs, id=id, parameters=parameters))
        _, content = self._jobs().post_json(_jobs_path(pipeline), body, self._timeout(timeout))
        job = _json_object(content).get("id")
        if not isinstance(job, str):
            raise StreamdagError(f"the server answered a job submission without an id: {content!r}")
        return job

    def job_result(
        self, pipeline: str, job: str, *, wait: float = 0.0, timeout: float | None = None
    ) -> Outputs | None:
        """The outputs of job ``job`` of ``pipeline``; None while it still runs, after
        waiting up to ``wait`` seconds for it. A failed job raises its error."""
        rest = self._jobs()
        path = f"{_jobs_path(pipeline)}/{quote(job, safe='')}"
        deadline = time.monotonic() + wait
        while True:
            status, content = rest.get_json(path, self._timeout(timeout))
            if status != 202:
                return oip.decode_response(oip.response_from_json(content))
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(_JOB_POLL_S, max(deadline - time.monotonic(), 0.0)))

    def wait_job(self, pipeline: str, job: str, *, timeout: float | None = None) -> Outputs:
        """The outputs of job ``job``, waiting for them up to ``timeout`` seconds;
        ``DeadlineExceeded`` if it has not finished by then."""
        seconds = self._timeout(timeout)
        result = self.job_result(pipeline, job, wait=seconds, timeout=seconds)
        if result is None:
            raise DeadlineExceeded(
                f"job {job} of pipeline {pipeline}: no result within {seconds:g} s"
            )
        return result

    # -- metadata and health -----------------------------------------------------------
    def metadata(
        self, name: str, *, version: str = "", timeout: float | None = None
    ) -> ModelMetadata:
        """The model's or pipeline's metadata: its name, platform, inputs and outputs."""
        return self._conn.metadata(name, version, self._timeout(timeout))

    def pipeline(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """``GET /v2/pipelines/<name>`` (REST): the pipeline's metadata, steps and topics."""
        path = f"/v2/pipelines/{quote(name, safe='')}"
        _, content = self._jobs().get_json(path, self._timeout(timeout))
        return _json_object(content)

    def ready(self, name: str | None = None, *, timeout: float | None = None) -> bool:
        """Whether the server (or the model or pipeline ``name``) can serve now."""
        seconds = self._timeout(timeout)
        if name is None:
            return self._conn.server_ready(seconds)
        return self._conn.ready(name, "", seconds)

    def live(self, *, timeout: float | None = None) -> bool:
        return self._conn.server_live(self._timeout(timeout))

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()
        if self._rest is not None and self._rest is not self._conn:
            self._rest.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _jobs(self) -> RestClient:
        if self._rest is None:
            raise ConfigError(
                "jobs and pipeline descriptions are served over REST: give the client an "
                "http(s):// address, or rest_url= beside the gRPC address"
            )
        return self._rest


def as_array(value: NDArray[Any] | Sequence[Any]) -> NDArray[Any]:
    """A numpy array as it is; a list as ``streamdag infer``'s shorthand reads it: floats
    FP32 (numpy would make them FP64, which few models take), strings BYTES."""
    if isinstance(value, np.ndarray):
        return value
    array = np.asarray(value)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    return array


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


def _jobs_path(pipeline: str) -> str:
    return f"/v2/pipelines/{quote(pipeline, safe='')}/jobs"


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(content)
    except ValueError as exc:
        raise StreamdagError(f"the server answered with a body that is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise StreamdagError("the server answered with JSON that is not an object")
    return parsed
