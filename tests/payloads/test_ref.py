"""The ``streamdag-payload`` header as untrusted input: whatever is wrong with it, it names
no object (``PayloadLost``, code ``data_loss``), never a Python error of another kind."""

from __future__ import annotations

import pytest

from streamdag.errors import PayloadLost
from streamdag.payloads import PayloadRef

URL = "file:///store/2026010100/r-0123456789abcdef"
SHA = "0123456789abcdef" * 4


def test_a_header_written_by_encode_is_read_back() -> None:
    ref = PayloadRef(URL, 12, SHA)
    assert PayloadRef.decode(ref.encode()) == ref
    assert PayloadRef.decode(ref.encode().decode()) == ref


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not a JSON object"),
        (b"\xff\xfe", "not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b"[" * 100_000, "not a JSON object"),
        (b'{"size": 1, "sha256": "%s"}' % SHA.encode(), "url is not a URL"),
        (b'{"url": 7, "size": 1, "sha256": "%s"}' % SHA.encode(), "url is not a URL"),
        (
            b'{"url": "file:///store/2026010100/a\\u0000b", "size": 1, "sha256": "%s"}'
            % SHA.encode(),
            "url is not a URL",
        ),
        (b'{"url": "%s", "size": 1e400, "sha256": "%s"}' % (URL.encode(), SHA.encode()), "size"),
        (b'{"url": "%s", "size": 1.5, "sha256": "%s"}' % (URL.encode(), SHA.encode()), "size"),
        (b'{"url": "%s", "size": -1, "sha256": "%s"}' % (URL.encode(), SHA.encode()), "size"),
        (b'{"url": "%s", "size": true, "sha256": "%s"}' % (URL.encode(), SHA.encode()), "size"),
        (b'{"url": "%s", "size": "12", "sha256": "%s"}' % (URL.encode(), SHA.encode()), "size"),
        (b'{"url": "%s", "size": 1, "sha256": "abc"}' % URL.encode(), "sha256"),
        (b'{"url": "%s", "size": 1, "sha256": null}' % URL.encode(), "sha256"),
    ],
)
def test_a_malformed_header_names_no_object(raw: bytes, problem: str) -> None:
    with pytest.raises(PayloadLost, match="header streamdag-payload names no object") as info:
        PayloadRef.decode(raw)
    assert problem in info.value.message
    assert info.value.code == "data_loss"
