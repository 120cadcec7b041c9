"""Writing downloaded bytes into a cache file without passing them through the page cache.

Owns: page-aligned buffers (``buffer``) and ``write_at``, which writes the aligned
middle of a range with ``O_DIRECT`` (the disk reads the bytes straight out of the
buffer: no copy, no page-cache pages to allocate and reclaim) and the unaligned head
and tail with a plain ``pwrite``. Where the file system refuses ``O_DIRECT`` (tmpfs
before Linux 6.6, some network and FUSE file systems), or the buffer is not aligned,
everything is a plain ``pwrite``. Blocking: call it from a worker thread. Must not: know
what the bytes are or which file they belong to (the clean cache does).

Why: a cold read of a drive file already fills the kernel's page cache once, with the
mount's own pages. Keeping the bytes in the clean cache through a buffered write filled
it a second time, and the copy and the page allocation ran on the core the read needs:
on a 2-core machine that made a cold 1 GiB read three times slower (docs/performance.md).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os

log = logging.getLogger(__name__)

ALIGN = 4096  # offset, length and memory alignment O_DIRECT needs (any block size up to it)


class Direct:
    """``O_DIRECT`` writes where they work. ``enabled`` turns off for good at the first
    refusal by the file system (then every write is buffered)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and hasattr(os, "O_DIRECT")
        self.direct_bytes = 0  # written past the page cache
        self.buffered_bytes = 0

    def write_at(self, path: str, data: bytes | bytearray | memoryview, off: int) -> None:
        """Write ``data`` at ``off`` of the existing file ``path`` (blocking)."""
        with memoryview(data).cast("B") as view:
            lo = min(len(view), -off % ALIGN)  # the aligned middle: [lo, hi) of ``view``
            hi = lo + (len(view) - lo) // ALIGN * ALIGN
            if not (self.enabled and hi > lo and _aligned(view[lo:hi])):
                lo = hi = 0
            plain = [(view[:lo], off), (view[hi:], off + hi)]
            if hi > lo and not self._direct(path, view[lo:hi], off + lo):
                plain.append((view[lo:hi], off + lo))
            self._plain(path, [(v, at) for v, at in plain if len(v)])

    def _plain(self, path: str, pieces: list[tuple[memoryview, int]]) -> None:
        if not pieces:  # (the whole range went past the page cache: no second open)
            return
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            for view, off in pieces:
                _pwrite_all(fd, view, off)
                self.buffered_bytes += len(view)
        finally:
            os.close(fd)

    def _direct(self, path: str, view: memoryview, off: int) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
        except OSError as e:
            return self._refused(e)
        try:
            _pwrite_all(fd, view, off)
        except OSError as e:
            return self._refused(e)
        finally:
            os.close(fd)
        self.direct_bytes += len(view)
        return True

    def _refused(self, e: OSError) -> bool:
        if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise e  # a real write error (ENOSPC, EIO): the caller's to handle
        if self.enabled:
            log.info("cache: the file system refuses O_DIRECT (%s); clean bytes go "
                     "through the page cache", e.strerror)  # fmt: skip
        self.enabled = False
        return False


def buffer(n: int) -> mmap.mmap | bytearray:
    """A zeroed buffer of ``n`` bytes, page-aligned (an anonymous mapping) when not empty."""
    return mmap.mmap(-1, n) if n > 0 else bytearray()


def _aligned(view: memoryview) -> bool:
    if view.readonly:  # (bytes) its address cannot be taken through ctypes: buffered
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGN == 0


def _pwrite_all(fd: int, view: memoryview, off: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], off + done)
