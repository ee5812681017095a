"""The client's public names, and how it reads lists (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest

import streamdag
import streamdag.client
from streamdag.client import as_array
from streamdag.errors import ConfigError


def test_exported_names() -> None:
    assert streamdag.__all__ == ["AsyncClient", "Client", "submit"]
    assert streamdag.Client is streamdag.client.Client
    assert streamdag.AsyncClient is streamdag.client.AsyncClient
    assert sorted(streamdag.client.__all__) == [
        "AsyncClient",
        "Client",
        "DEFAULT_ADDRESS",
        "Inputs",
        "Outputs",
        "Protocol",
        "as_array",
    ]
    for name in streamdag.client.__all__:
        assert hasattr(streamdag.client, name)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        ([[1.5, 2]], np.float32),
        ([1, 2], np.int64),
        ([True], np.bool_),
        (np.array([1.5]), np.float64),  # an array is sent as it is
    ],
)
def test_lists_are_read_as_the_cli_shorthand_reads_them(value: object, dtype: type) -> None:
    assert as_array(value).dtype == dtype  # type: ignore[arg-type]


def test_strings_are_bytes_tensors() -> None:
    assert as_array(["chest pain"]).dtype.kind == "U"  # sent as BYTES, UTF-8


def test_the_address_picks_the_transport() -> None:
    with streamdag.Client("127.0.0.1:1") as grpc_client:
        assert grpc_client.protocol == "grpc"
    with streamdag.Client("http://127.0.0.1:1") as rest_client:
        assert rest_client.protocol == "rest"
    with streamdag.Client("127.0.0.1:1", protocol="rest") as rest_client:
        assert rest_client.protocol == "rest"


def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="go together"):
        streamdag.Client("127.0.0.1:1", cert="client.pem")
