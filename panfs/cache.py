"""Local cache files: one file per version of a file's bytes, under ``CACHE_DIR/data``.

Owns: creating, copying, opening, writing, truncating and removing cache files,
and turning "disk full" into ``CacheFullError`` (ENOSPC) without losing what is
already written. Must not: speak HTTP or know about the journal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path

from panfs.errors import CacheFullError, LocalError


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        try:
            self.data.mkdir(parents=True, exist_ok=True)
            probe = self.data / ".probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise LocalError(
                f"cache dir {root} is not writable ({e.strerror}); "
                "set cache.dir to a writable folder"
            ) from None

    def new_file(self, copy_from: str | None) -> str:
        path = str(self.data / uuid.uuid4().hex)
        try:
            if copy_from is not None:
                shutil.copyfile(copy_from, path)
            else:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                os.close(fd)
        except OSError as e:
            _raise(e, path)
        return path

    def open(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        try:
            return os.pwrite(fd, data, off)
        except OSError as e:
            _raise(e, "cache file")
        raise AssertionError("unreachable")

    def truncate(self, fd: int, size: int) -> None:
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            _raise(e, "cache file")

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _raise(e: OSError, what: str) -> None:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        raise CacheFullError(f"cache disk full writing {what}; free space in cache.dir") from None
    raise LocalError(f"cache I/O error on {what}: {e.strerror}", err=e.errno) from None
