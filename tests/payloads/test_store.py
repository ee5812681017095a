"""The payload store on a real directory: objects round-trip, a changed or missing object
is named in the error, a URL outside the store, a link, a FIFO or a name the store never
writes is refused, a read is bounded in time, a folder emptied under a running store is
made again, sweeps drop whole old hours."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

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


def forged(url: str, data: bytes) -> bytes:
    """A header naming ``url`` with the size and SHA-256 of ``data``."""
    return PayloadRef(url, len(data), hashlib.sha256(data).hexdigest()).encode()


def test_a_link_below_the_store_is_never_followed(tmp_path: Path) -> None:
    secret = b"outside the store"
    (tmp_path / "secret").write_bytes(secret)
    store = PayloadStore(f"file://{tmp_path}/store")
    digest = hashlib.sha256(secret).hexdigest()
    hour = tmp_path / "store" / "2026010100"
    hour.mkdir(parents=True)
    (tmp_path / "store" / "evil").symlink_to("/")
    (hour / f"r-{digest[:16]}").symlink_to(tmp_path / "secret")
    (tmp_path / "store" / "2026010101").symlink_to(hour)
    refused = {
        f"{store.url}/evil{tmp_path}/secret": "is not in the payload store",
        f"{store.url}/2026010100/r-{digest[:16]}": "is a symbolic link",
        f"{store.url}/2026010101/r-{digest[:16]}": "is a symbolic link",
    }
    for url, problem in refused.items():
        with pytest.raises(PayloadLost, match=problem) as info:
            store.claim(forged(url, secret))
        assert str(len(secret)) not in info.value.message


def test_a_store_whose_own_folder_is_a_link_reads_its_objects(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    store = PayloadStore(f"file://{tmp_path}/alias")
    _, header = store.check_in("r1", b"v" * 2000)
    assert store.claim(header) == b"v" * 2000


def test_a_wrong_digest_tells_nothing_about_the_file(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    value = b"the real object" * 100
    ref = store.put("r1", value)
    wrong = PayloadRef(ref.url, 3, ref.sha256[:16] + "0" * 48).encode()
    with pytest.raises(PayloadLost, match="does not match its record") as info:
        store.claim(wrong)
    assert f"{len(value):,}" not in info.value.message
    assert hashlib.sha256(value).hexdigest()[16:24] not in info.value.message


def test_only_names_the_store_writes_are_read(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}")
    ref = store.put("r1", b"x")
    other = hashlib.sha256(b"y").hexdigest()
    for url, sha in (
        (ref.url, other),  # the name's digest is not the record's
        (ref.url.replace("/r1-", "/r1/x-"), ref.sha256),  # one folder deeper
        (f"{store.url}/x{ref.url[len(store.url) + 1 :]}", ref.sha256),  # not an hour
        (f"{ref.url}.part-0123abcd", ref.sha256),  # a write in progress
    ):
        with pytest.raises(PayloadLost, match="is not in the payload store"):
            store.claim(PayloadRef(url, 1, sha).encode())


def test_a_fifo_or_a_folder_is_refused_at_once(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}", read_timeout_s=60)
    digest = hashlib.sha256(b"x").hexdigest()
    (tmp_path / "2026010100").mkdir()
    os.mkfifo(tmp_path / "2026010100" / f"fifo-{digest[:16]}")
    (tmp_path / "2026010100" / f"dir-{digest[:16]}").mkdir()
    for name in ("fifo", "dir"):
        started = time.monotonic()
        with pytest.raises(PayloadLost, match="is not a regular file"):
            store.claim(forged(f"{store.url}/2026010100/{name}-{digest[:16]}", b"x"))
        assert time.monotonic() - started < 5


def test_a_read_that_hangs_fails_after_the_read_timeout(tmp_path: Path) -> None:
    store = PayloadStore("memory://streamdag-test-hang", read_timeout_s=0.3)
    ref = store.put("r1", b"x")
    hang = store.fs.open

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3)
        return hang(*args, **kwargs)

    store.fs.open = slow_open
    started = time.monotonic()
    try:
        with pytest.raises(PayloadLost, match=r"was not read within 0\.3 s"):
            store.claim(ref.encode())
    finally:
        del store.fs.open
        store.fs.rm(store.root, recursive=True)
    assert time.monotonic() - started < 2


def test_a_store_emptied_under_a_running_writer_is_written_again(tmp_path: Path) -> None:
    store = PayloadStore(f"file://{tmp_path}/store")
    store.put("r1", b"1")
    shutil.rmtree(tmp_path / "store")
    (tmp_path / "store").mkdir()
    ref = store.put("r2", b"2")
    assert store.claim(ref.encode()) == b"2"


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
