"""The payload store on a real directory: objects round-trip, a changed or missing object
is named in the error, a URL outside the store is refused, sweeps drop whole old hours."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamdag.errors import ConfigError, PayloadLost
from streamdag.payloads import PayloadRef, PayloadStore
from streamdag.protocol import request_from_bytes, response_from_bytes


def test_a_value_checked_in_is_claimed_back_and_named_by_its_request(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    value = bytes(range(256)) * 4000
    stub, header = store.check_in("req/1 a", value)
    ref = PayloadRef.decode(header)
    assert ref.size == len(value) and ref.url.startswith(f"file://{tmp_path}/")
    assert "req_1_a-" in ref.url  # the request id, made safe for a file name
    assert len(stub) < 300
    assert store.claim(header) == value
    # Readers that do not resolve stubs still parse one, as a request or a response.
    assert request_from_bytes(stub).id == "req/1 a"
    assert response_from_bytes(stub).parameters["streamdag_payload"].string_param == ref.url
    assert [p.name for p in tmp_path.rglob("*") if ".part-" in p.name] == []


def test_a_changed_or_missing_object_is_an_error_naming_it(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    _, header = store.check_in("r1", b"x" * 5000)
    ref = PayloadRef.decode(header)
    path = Path(ref.url.removeprefix("file://"))
    path.write_bytes(b"y" * 5000)
    with pytest.raises(PayloadLost, match=f"payload {ref.url} does not match its record"):
        store.claim(header)
    path.unlink()
    with pytest.raises(PayloadLost, match=f"payload {ref.url} is missing"):
        store.claim(header)


def test_a_record_cannot_make_a_worker_read_outside_the_store(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"s")
    store = PayloadStore(f"file://{tmp_path}/store")
    for url in (f"file://{tmp_path}/secret", f"file://{tmp_path}/store/../secret"):
        header = PayloadRef(url, 1, "0" * 64).encode()
        with pytest.raises(PayloadLost, match="is not in the payload store"):
            store.claim(header)
    with pytest.raises(PayloadLost, match="names no object"):
        store.claim(b"not json")


def test_a_sweep_drops_the_hours_older_than_the_retention_only(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    now = time.time()
    old = store.put("old", b"o", now=now - 5 * 3600)
    recent = store.put("recent", b"r", now=now - 1800)
    removed = store.sweep(3 * 3600, now=now)
    assert len(removed) == 1 and old.url.startswith(removed[0] + "/")
    with pytest.raises(PayloadLost):
        store.claim(old.encode())
    assert store.claim(recent.encode()) == b"r"
    assert store.sweep(3 * 3600, now=now) == []


def test_a_store_without_its_package_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="payload store nosuchscheme://b"):
        PayloadStore("nosuchscheme://bucket/prefix")
