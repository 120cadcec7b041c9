"""The commit interval: what was committed becomes power-cut durable within a second.

Owns: the cadence that makes the state database durable. The database runs WAL with
``synchronous=NORMAL`` (``metadata.py``): a commit is in the WAL file (it survives a
killed daemon at once) but reaches the disk only when this loop fsyncs the WAL, at
most ``INTERVAL`` later, in a worker thread; the clean cache's new ranges are recorded
(after their bytes were fsynced) on the same beat, and the WAL is checkpointed into
the database from a second connection, off the trio thread. ``sync`` does it at once
(an ``fsync()`` by a program must not wait a second); and the cadence of the fsyncs of
closed versions' cache files before they are queued (``fsync_all``, many in one
worker-thread hop, one ``syncfs`` for a batch of them). Must not: hold queries of its own
beyond the checkpoint, or decide what is committed (journal, pending, clean do).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import trio

from panfs import mounts
from panfs.clean_cache import CleanCache

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds: at most this much of committed state is lost to a power cut
CHECKPOINT_EVERY = 5  # syncs between two checkpoints of the WAL into the database
# versions closed within WINDOW seconds of each other are queued together, after one fsync
# hop for all of them (at once when GROUP wait): well inside INTERVAL, so the power-cut
# promise holds (``versions.Versions.run``)
WINDOW = 0.05
GROUP = 64
# a batch of this many files is made durable by one syncfs(2) of their file system instead of
# an fsync each: 2,000 small files copied took 1.80 s with an fsync each and 1.21 s with a
# syncfs per batch (docs/performance.md). It writes whatever else is dirty on that file
# system too, which a batch of a few files should not wait for: fewer get an fsync each
SYNCFS_AT = 4
# file systems whose syncfs makes every file's data as durable as an fsync of it would (local
# block file systems; memory ones, where neither does anything). On others (FUSE, NFS, ...)
# syncfs may only hand dirty pages to the server, where an fsync asks it to sync: fsync each
SYNCFS_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "tmpfs", "ramfs"})


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs, where the kernel reports writeback errors through it (Linux 5.8 and
    newer; before, a failed write would go unreported, and each file is fsynced)."""
    try:
        version = tuple(int(p) for p in os.uname().release.split(".")[:2])
        fn: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, ValueError):  # (not Linux, or a libc without it)
        return None
    return fn if version >= (5, 8) else None


_syncfs = _load_syncfs()
_covers: dict[int, bool] = {}  # st_dev -> is syncfs enough there (SYNCFS_TYPES)


def _syncfs_covers(st_dev: int) -> bool:
    if st_dev not in _covers:
        types = mounts.fstypes(st_dev)
        _covers[st_dev] = bool(types) and types <= SYNCFS_TYPES
    return _covers[st_dev]


def _by_file_system(fds: list[int]) -> dict[int, list[int]]:
    """The files by the file system they are on (-1: one whose fstat failed)."""
    by_fs: dict[int, list[int]] = {}
    for fd in fds:
        try:
            dev = os.fstat(fd).st_dev
        except OSError:
            dev = -1  # (its fsync says what is wrong)
        by_fs.setdefault(dev, []).append(fd)
    return by_fs


def fsync_all(fds: list[int]) -> dict[int, OSError]:
    """Make the files durable (in a worker thread: one hop for many small files, where a
    hop costs the trio thread more than the fsync of a small file costs the disk); the
    failures. SYNCFS_AT files or more: one ``syncfs`` of each file system they are on (of
    SYNCFS_TYPES), one journal commit for all of its files; when it reports an error, each
    of those files is fsynced, so the failures are known file by file, as with fewer
    files."""
    errors: dict[int, OSError] = {}
    if len(fds) >= SYNCFS_AT and _syncfs is not None:
        left: list[int] = []  # to fsync one by one
        for dev, on in _by_file_system(fds).items():
            synced = dev != -1 and _syncfs_covers(dev) and _syncfs(on[0]) == 0
            if not synced:
                left += on
        fds = left
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as e:
            errors[fd] = e
    return errors


class Syncer:
    def __init__(
        self, conn: sqlite3.Connection, db_path: Path, clean: CleanCache | None = None
    ) -> None:
        self.conn = conn  # the trio thread's connection: only its change count is read
        self.db_path = db_path
        self.clean = clean
        self.syncs = 0  # WAL fsyncs done (for tests and the bench)
        self._synced = -1  # conn.total_changes when the WAL was last fsynced
        self._lock = trio.Lock()
        self._checkpointer: sqlite3.Connection | None = None

    async def run(self, interval: float = INTERVAL) -> None:
        """Every ``interval`` seconds until cancelled; a last sync on the way out."""
        try:
            while True:
                await trio.sleep(interval)
                await self.sync()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await self.sync(checkpoint=True)
            if self._checkpointer is not None:
                self._checkpointer.close()

    async def sync(self, *, checkpoint: bool = False) -> None:
        """Make everything committed before this call durable (the WAL fsynced)."""
        target = self.conn.total_changes
        async with self._lock:
            if self.clean is not None:
                await self.clean.persist()
                target = self.conn.total_changes
            if self._synced >= target and not checkpoint:
                return
            self.syncs += 1
            point = checkpoint or self.syncs % CHECKPOINT_EVERY == 0
            await trio.to_thread.run_sync(self._sync_wal, point)
            self._synced = target

    def _sync_wal(self, checkpoint: bool) -> None:  # a worker thread
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(str(self.db_path) + "-wal", os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if not checkpoint:
            return
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    self.db_path, timeout=5, check_same_thread=False
                )
                self._checkpointer.execute("PRAGMA synchronous=NORMAL")
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            log.info("checkpoint skipped: %s", e)
