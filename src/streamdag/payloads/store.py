"""The payload store: objects under one fsspec URL, named by the hour they were written.

Layout: ``<store>/<YYYYMMDDHH>/<request id>-<sha256[:16]>`` (UTC hour). The hour folder
lets a sweep drop whole hours without reading any object's metadata, the same way on
every fsspec backend; the request id in the name tells whose payload an object is; the
digest makes a write idempotent, so a batch redone after a crash writes the same name.

A reference (``PayloadRef``) is read only if it names an object of this layout under the
store's own URL; how the object is then opened (no links, regular files only, bounded in
time) is in ``reading.py``. A refused reference is ``PayloadLost`` whose message tells
nothing about the file it named.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from typing import Any

from streamdag.errors import ConfigError, PayloadLost, Unavailable
from streamdag.payloads.reading import ObjectRefused, read_local, read_remote, within
from streamdag.payloads.ref import PayloadRef, stub_value
from streamdag.settings import get_settings

__all__ = ["DEFAULT_INLINE_MAX_BYTES", "PayloadStore", "store_from_settings"]

log = logging.getLogger("streamdag.payloads")

DEFAULT_INLINE_MAX_BYTES = 900_000
"""Records up to this size travel inline: under librdkafka's and Kafka's default 1 MB."""

DEFAULT_READ_TIMEOUT_S = 30.0
"""How long a read of one object may take before its request fails."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HOUR = re.compile(r"[0-9]{10}")  # fullmatch: no other digits, no trailing newline
# What put() names an object: the request id made safe (at most 120 characters), then the
# first 16 hex digits of its SHA-256. Never ".", "..", a ".part-" file or a path.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,120}-([0-9a-f]{16})")


class PayloadStore:
    """Objects under ``url``; records over ``inline_max_bytes`` are written here."""

    def __init__(
        self,
        url: str,
        *,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
        retention_s: float = 7 * 86_400.0,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> None:
        try:
            import fsspec  # here: a worker without a store never needs it
            from fsspec.implementations.local import LocalFileSystem

            fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:  # no package for the scheme, or a bad URL
            raise ConfigError(f"payload store {url}: {exc}") from exc
        self.fs: Any = fs
        self._local = isinstance(fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.url = fs.unstrip_protocol(self.root).rstrip("/")
        self.inline_max_bytes = inline_max_bytes
        self.retention_s = retention_s
        self.read_timeout_s = read_timeout_s
        self._made: set[str] = set()

    def __repr__(self) -> str:
        return f"PayloadStore({self.url!r}, inline_max_bytes={self.inline_max_bytes})"

    # -- writing -----------------------------------------------------------------------
    def put(self, request_id: str, data: bytes, *, now: float | None = None) -> PayloadRef:
        """Write ``data`` as an object of ``request_id``; ``Unavailable`` if the store
        refuses it."""
        digest = hashlib.sha256(data).hexdigest()
        hour = time.strftime("%Y%m%d%H", time.gmtime(time.time() if now is None else now))
        name = f"{_UNSAFE.sub('_', request_id)[:120] or 'request'}-{digest[:16]}"
        try:
            try:
                self._write(hour, name, data)
            except FileNotFoundError:
                # The hour folder made earlier is gone (the store was emptied or replaced
                # under a running process): make it again rather than fail every request
                # until the next hour.
                self._made.discard(hour)
                self._write(hour, name, data)
        except OSError as exc:
            raise Unavailable(f"cannot write payload {self.url}/{hour}/{name}: {exc}") from exc
        return PayloadRef(url=f"{self.url}/{hour}/{name}", size=len(data), sha256=digest)

    def _write(self, hour: str, name: str, data: bytes) -> None:
        path = f"{self.root}/{hour}/{name}"
        if hour not in self._made:
            self.fs.makedirs(f"{self.root}/{hour}", exist_ok=True)
            self._made.add(hour)
        if self._local:
            # A reader must never see half an object: write aside, then rename.
            part = f"{path}.part-{uuid.uuid4().hex[:8]}"
            self.fs.pipe_file(part, data)
            self.fs.mv(part, path)
        else:
            self.fs.pipe_file(path, data)  # one PUT: an object store shows all or nothing

    def check_in(self, request_id: str, value: bytes) -> tuple[bytes, bytes]:
        """Store ``value``; the stub to send in its place and the ``streamdag-payload``
        header value."""
        ref = self.put(request_id, value)
        return stub_value(request_id, ref), ref.encode()

    # -- reading -----------------------------------------------------------------------
    def claim(self, header: str | bytes) -> bytes:
        """The value a ``streamdag-payload`` header names, checked against its size and
        SHA-256. ``PayloadLost`` names the object when the header names no object of this
        store (outside it, not laid out as its objects are, a link, not a regular file),
        or when the object is missing, unreadable within ``read_timeout_s`` or not the
        bytes the record says."""
        ref = PayloadRef.decode(header)
        hour, name = self._object_path(ref)
        # One byte more than the record says: a longer object is told apart without
        # reading a file of any size into memory.
        limit = ref.size + 1
        try:
            if self._local:
                data = within(
                    self.read_timeout_s,
                    ref.url,
                    lambda: read_local(self.root or "/", (hour, name), limit),
                )
            else:
                path = f"{self.root}/{hour}/{name}"
                data = within(
                    self.read_timeout_s, ref.url, lambda: read_remote(self.fs, path, limit)
                )
        except FileNotFoundError:
            raise PayloadLost(f"payload {ref.url} is missing from the payload store") from None
        except ObjectRefused as exc:
            raise PayloadLost(f"payload {ref.url} {exc.reason}") from None
        except OSError as exc:
            raise PayloadLost(f"payload {ref.url} cannot be read: {exc.strerror or exc}") from exc
        # The message tells only what the record says: the bytes read are not the
        # caller's to learn about, even by their size.
        if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise PayloadLost(
                f"payload {ref.url} does not match its record, which says {ref.size:,} "
                f"bytes with SHA-256 {ref.sha256[:16]}..."
            )
        return data

    def _object_path(self, ref: PayloadRef) -> tuple[str, str]:
        """The hour folder and name of the object ``ref`` names; ``PayloadLost`` unless it
        is one this store could have written: reading any URL a record names would let a
        producer read the workers' files."""
        prefix = self.url + "/"
        hour, _, name = ref.url.removeprefix(prefix).partition("/")
        found = _NAME.fullmatch(name)
        if (
            not ref.url.startswith(prefix)
            or not _HOUR.fullmatch(hour)
            or found is None
            or found.group(1) != ref.sha256[:16]
        ):
            raise PayloadLost(
                f"payload {ref.url} is not in the payload store {self.url}: its objects are "
                "<YYYYMMDDHH>/<request id>-<sha256[:16]> of the record's SHA-256"
            )
        return hour, name

    # -- sweeping ----------------------------------------------------------------------
    def sweep(
        self, older_than_s: float, *, now: float | None = None, dry_run: bool = False
    ) -> list[str]:
        """Delete the hour folders whose every object is older than ``older_than_s``; the
        URLs of the folders deleted (with ``dry_run``: due, left in place)."""
        cutoff = (time.time() if now is None else now) - older_than_s
        # A folder holds objects written until the end of its hour.
        last_hour = time.strftime("%Y%m%d%H", time.gmtime(cutoff - 3600))
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        removed = []
        for entry in sorted(str(e).rstrip("/") for e in entries):
            hour = entry.rsplit("/", 1)[-1]
            if not _HOUR.fullmatch(hour) or hour > last_hour:
                continue
            if dry_run:
                removed.append(f"{self.url}/{hour}")
                continue
            try:
                self.fs.rm(entry, recursive=True)
            except FileNotFoundError:
                continue  # another sweeper was first
            self._made.discard(hour)
            removed.append(f"{self.url}/{hour}")
        if removed and not dry_run:
            log.info("payload store %s: removed %s", self.url, ", ".join(removed))
        return removed


def store_from_settings(url: str | None = None) -> PayloadStore | None:
    """The store of ``url`` (a ``--payload-store``), else of ``STREAMDAG_PAYLOAD_STORE``;
    None when neither is set."""
    settings = get_settings()
    chosen = url or settings.payload_store
    if not chosen:
        return None
    return PayloadStore(
        chosen,
        inline_max_bytes=settings.payload_inline_max_bytes,
        retention_s=settings.payload_retention_s,
        read_timeout_s=settings.payload_read_timeout_s,
    )
