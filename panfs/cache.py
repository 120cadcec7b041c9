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

CHECK_AT_MOST = 64 << 20  # bytes written between two looks at free space, at most


class Cache:
    def __init__(self, root: Path, min_free: int = 0) -> None:
        self.root = root
        self.data = root / "data"
        self.min_free = min_free  # headroom kept for the journal (and everyone else)
        self._budget = 0  # bytes that may be written before free space is looked at again
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
        if copy_from is not None and self.min_free:
            self._check_free(os.path.getsize(copy_from))
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

    def _check_free(self, need: int) -> None:
        """ENOSPC before the disk is really full: the journal must always have room."""
        self._budget -= need
        if self._budget > 0:
            return
        st = os.statvfs(self.data)
        free = st.f_bavail * st.f_frsize
        if free - need < self.min_free:
            raise CacheFullError(
                f"cache disk full ({free >> 20} MiB free, cache.min_free keeps "
                f"{self.min_free >> 20} MiB); free space in cache.dir"
            )
        # look again after half the headroom is used (sooner near the line)
        self._budget = min(CHECK_AT_MOST, (free - need - self.min_free) // 2)

    def has_room(self, n: int) -> bool:
        """May ``n`` more bytes be written without eating into ``min_free``?"""
        try:
            if self.min_free:
                self._check_free(n)
        except CacheFullError:
            return False
        return True

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        if self.min_free:
            self._check_free(len(data))
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
