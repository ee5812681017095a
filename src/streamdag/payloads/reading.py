"""Reading one payload-store object that a record names, without trusting the record.

Whoever can produce to a pipeline's topics chooses the ``streamdag-payload`` header, so a
read must open nothing but an object of the store and must end in bounded time:

- On a local store (``file://``) the object is opened one path component at a time from
  the store's folder, each with ``O_NOFOLLOW`` relative to the previous one (``openat``):
  a symbolic link anywhere below the store's folder is refused, and no link swapped in
  between a check and the open can lead outside it. The store's own folder may be a link
  (a mount alias); it is the operator's choice, not the record's.
- Only a regular file is read. The open does not block (``O_NONBLOCK``: a FIFO would wait
  for a writer forever) and the file's type is checked on the open descriptor.
- At most the record's size plus one byte is read: enough to tell a longer object apart,
  never a whole large file the record did not name.
- Every read runs in a daemon thread that the caller waits for at most ``timeout_s``: a
  hung network mount or object store fails the request instead of its partition. A read
  that never returns leaves its thread behind; that costs a thread, not the worker.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from typing import Any

from streamdag.errors import PayloadLost

__all__ = ["ObjectRefused", "read_local", "read_remote", "within"]


class ObjectRefused(Exception):
    """The path names something a store never holds as an object (a link, a FIFO, a
    folder); ``reason`` says which, for the caller's ``PayloadLost``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def read_local(root: str, parts: tuple[str, ...], limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file ``root/parts[0]/.../parts[-1]``, opened
    without following any link below ``root``. ``FileNotFoundError`` if it is not there,
    ``ObjectRefused`` if it is not a regular file or a component is a link."""
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = _open_at(part, folder, os.O_DIRECTORY)
            os.close(folder)
            folder = inner
        fd = _open_at(parts[-1], folder, os.O_NONBLOCK)
    finally:
        os.close(folder)
    try:
        # Checked on the open descriptor: the name may point elsewhere by now.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ObjectRefused("is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb") as file:  # owns fd from here
        return file.read(limit)


def _open_at(name: str, folder: int, flags: int) -> int:
    try:
        return os.open(name, _OPEN | flags, dir_fd=folder)
    except OSError as exc:
        # A link is ELOOP, or ENOTDIR with O_DIRECTORY (Linux checks that first).
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        if stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            raise ObjectRefused("is a symbolic link; the payload store follows none") from None
        raise FileNotFoundError(errno.ENOENT, "not a folder") from None


def read_remote(fs: Any, path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of the file ``path`` of the fsspec filesystem ``fs``."""
    if fs.info(path).get("type") != "file":
        raise ObjectRefused("is not a file")
    with fs.open(path, "rb") as file:
        data: bytes = file.read(limit)
    return data


def within(timeout_s: float, url: str, read: Callable[[], bytes]) -> bytes:
    """``read()``'s bytes, or ``PayloadLost`` naming ``url`` if it has not returned in
    ``timeout_s``; its own exceptions are raised here."""
    outcome: list[bytes] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(read())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="payload-read", daemon=True).start()
    if not done.wait(timeout_s):
        raise PayloadLost(f"payload {url} was not read within {timeout_s:g} s")
    if failure:
        raise failure[0]
    return outcome[0]
