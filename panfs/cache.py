"""Local cache files: one file per version of a file's bytes, under ``STATE_DIR/data``
(dirty: not yet on the drive) and ``CACHE_DIR/data`` (clean: re-downloadable).

Owns: creating, copying, opening, writing, truncating and removing cache files,
the spare empty files made ahead in idle time for new versions (``keep_spares``),
and turning "disk full" into ``CacheFullError`` (ENOSPC) without losing what is
already written. Must not: speak HTTP or know about the journal.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

import trio

from panfs.errors import CacheFullError, LocalError

log = logging.getLogger(__name__)

CHECK_AT_MOST = 64 << 20  # bytes written between two looks at free space, at most
# empty cache files made ahead (``keep_spares``) so that a CREATE opens one made already:
# allocating a new inode is most of what a small file costs the thread that answers the
# kernel (``docs/performance.md``). Kept across mounts: empty files nothing refers to are
# taken back at start-up (``adopt_spare``). SPARES are kept; a burst of CREATEs that takes
# them all doubles that, up to SPARES_MAX (an empty file costs an inode, no data block)
SPARES = 1024
SPARES_MAX = 8192
# they are made only once no CREATE took one and nothing was written for this long, and the
# making stops at the next: made while CREATEs run, they hold the folder's lock those wait
# for; made while a big file is written or read, they compete with it
SPARES_IDLE = 0.5


class Cache:
    def __init__(self, root: Path, min_free: int = 0, clean_root: Path | None = None) -> None:
        self.root = root
        self.data = root / "data"
        # clean bytes (the clean cache's files); the same folder unless state and cache split
        self.clean_data = (clean_root or root) / "data"
        self.min_free = min_free  # headroom kept for the journal (and everyone else)
        self._budget = 0  # bytes that may be written before free space is looked at again
        # paths of empty files made ahead (``keep_spares``): taken on the trio thread, added
        # by one thread of their own (a deque's append and popleft are atomic)
        self.spares_wanted = SPARES
        self._spares: collections.deque[str] = collections.deque()
        self._low = trio.Event()
        self._stop = False
        self._used = 0  # CREATEs and writes so far (the making stops when it changes)
        self._drained = True  # no spares since they were last made
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
        self._used += 1
        while self._spares:
            path = self._spares.popleft()
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue  # removed meanwhile (by hand): the next, or a new one
            if len(self._spares) < self.spares_wanted * 3 // 4:
                self._low.set()
            return path, fd
        if not self._drained:  # a burst took them all: keep more
            self._drained = True
            self.spares_wanted = min(self.spares_wanted * 2, SPARES_MAX)
        self._low.set()
        path = str(self.data / uuid.uuid4().hex)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as e:
            _raise(e, path)
        return path, fd

    def adopt_spare(self, path: str) -> None:
        """An empty cache file nothing refers to (found at start-up): a spare."""
        self._spares.append(path)

    async def keep_spares(self) -> None:
        """Keep ``spares_wanted`` empty files made ahead for ``create``, for as long as the
        mount lives. They are made by a thread of their own at the lowest priority (idle
        time: on a busy machine it yields to everything else, on another core it costs
        nothing), waited for however this task ends."""
        token = trio.lowlevel.current_trio_token()
        self._low.set()
        self._stop = False
        while True:
            await self._low.wait()
            used = -1
            while used != self._used:  # until no CREATE and no write for SPARES_IDLE
                used = self._used
                await trio.sleep(SPARES_IDLE)
            self._low, self._drained = trio.Event(), False
            done = trio.Event()
            threading.Thread(
                target=self._make_spares, args=(used, token, done), name="panfs-spares",
                daemon=True,
            ).start()  # fmt: skip
            try:
                await done.wait()
            finally:
                if not done.is_set():
                    self._stop = True
                    with trio.CancelScope(shield=True):
                        await done.wait()

    def _make_spares(self, used: int, token: trio.lowlevel.TrioToken, done: trio.Event) -> None:
        """In the spares' thread: make them until there are enough, or a CREATE or a write
        came since the ``used``-th; then ``done`` is set (on the trio thread)."""
        try:
            with contextlib.suppress(OSError):  # this thread only (Linux: a thread's nice)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            while len(self._spares) < self.spares_wanted and used == self._used:
                if self._stop:
                    return
                path = str(self.data / uuid.uuid4().hex)
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
                except OSError as e:  # (disk full, ...): ``create`` meets it and says so
                    log.debug("no spare cache file: %s", e)
                    return
                os.close(fd)
                self._spares.append(path)
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

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

    def writing(self) -> None:
        """Bytes are about to be written to a cache file: the spares wait (their making
        would compete with this writing for the disk and the CPU)."""
        self._used += 1

    def pwrite(self, fd: int, data: bytes, off: int) -> int:
        self._used += 1  # (``writing``)
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
