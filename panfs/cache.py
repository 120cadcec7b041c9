"""Local cache files: one file per version of a file's bytes, under ``STATE_DIR/data``
(dirty: not yet on the drive) and ``CACHE_DIR/data`` (clean: re-downloadable).

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
    def __init__(self, root: Path, min_free: int = 0, clean_root: Path | None = None) -> None:
        self.root = root
        self.data = root / "data"
        # clean bytes (the clean cache's files); the same folder unless state and cache split
        self.clean_data = (clean_root or root) / "data"
        self.min_free = min_free  # headroom kept for the journal (and everyone else)
        self._budget = 0  # bytes that may be written before free space is looked at again
        for d in dict.fromkeys((self.data, self.clean_data)):
            try:
                d.mkdir(parents=True, exist_ok=True)
                probe = d / ".probe"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as e:
                raise LocalError(
                    f"cache dir {d.parent} is not writable ({e.strerror}); "
                    "set cache.dir to a writable folder"
                ) from None

    def new_file(self, copy_from: str | None) -> str:
        path = str(self.data / uuid.uuid4().hex)
        if copy_from is not None and self.min_free:
            self._check_free(os.path.getsize(copy_from))
        try:
            if copy_from is None:
                path, fd = self.create()
                os.close(fd)
            else:
                shutil.copyfile(copy_from, path)
        except OSError as e:
            _raise(e, path)
        return path

    def create(self) -> tuple[str, int]:
        """A new, empty cache file, open for reading and writing: one ``open``, where
        ``new_file`` and ``open`` take two (the cost of a new small file is in syscalls)."""
        path = str(self.data / uuid.uuid4().hex)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as e:
            _raise(e, path)
        return path, fd

    def new_clean_file(self) -> str:
        """An empty file for clean bytes (in the cache dir, not the state dir)."""
        path = str(self.clean_data / uuid.uuid4().hex)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except OSError as e:
            _raise(e, path)
        return path

    def to_clean(self, path: str) -> str:
        """A landed version's file becomes clean: move it into the clean folder when that is
        another folder on the same file system (a rename); across file systems it stays
        where it is (a copy would block; its clean row names it wherever it is). Idempotent:
        a file moved before a crash is found at its new place."""
        if self.clean_data == self.data or os.path.dirname(path) != str(self.data):
            return path
        target = str(self.clean_data / os.path.basename(path))
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return target if os.path.exists(target) else path
        except OSError:
            return path  # EXDEV (another file system) or anything else: keep it in place
        return target

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
