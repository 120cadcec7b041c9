"""A write version's whole life: open, first write, write, close, publish, supersede, land.

Owns: when a version exists and which cache file holds it. Opening a file for
writing makes no version: the first write (or ``O_TRUNC`` of non-empty bytes, or
``create``) does, so ``touch`` of an existing file uploads nothing. A new version
is recorded (``open_versions``) before its first byte. It reuses the cache file of
the file's current version when nothing on the drive depends on those bytes yet
(interrupted, failed, or queued with no upload session: continuing a cut copy
writes in place, and a burst of saves inside the write-back delay uploads once);
otherwise it starts as a copy of the current bytes, made in a worker thread at
the first write, never at open and never on the trio thread. On the last close
the version is fsynced and queued (``journal.add`` supersedes older unlanded
versions of the name in the same transaction) with the write-back delay; while
the mount runs ``run``, the kernel's RELEASE returns at once and ``run`` queues
what closed in the same moment together, in close order, after one fsync hop, in one
transaction (a savepoint each). When an upload ends, a landed version's cache file
becomes clean cache and a superseded one's goes. Must not: talk to the drive (the
uploader and ``vfs.py`` do), or know FUSE.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import trio

from panfs import crashpoint, durability
from panfs.attrs import Attrs, AttrStore, drive_key, file_time_ns, version_key
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.errors import CacheFullError, LocalError, StateError
from panfs.handles import Handle, Handles
from panfs.inodes import InodeTable, Node
from panfs.journal import RECOVERED_ID, Identity, Job, Journal, identity_fd
from panfs.metadata import savepoint, transaction
from panfs.pending import OpenVersions
from panfs.uploader import Uploader

log = logging.getLogger(__name__)

# the bytes of a drive file in a local file (downloading what is missing)
FetchWhole = Callable[[Node], Awaitable[str]]


def _version(h: Handle) -> str | None:
    return h.version


@dataclass(eq=False)  # identity: a version closed is itself, whatever its fields
class _Closed:
    """A version whose last writer closed, waiting for ``Versions.run`` to queue it."""

    node: Node
    fd: int  # the last writer's descriptor, handed over; closed once it is queued
    path: str
    done: trio.Event | None  # someone waits for it (None: the kernel's RELEASE, nobody)
    broken: str | None = None  # a write of this version failed: it is kept, not uploaded
    error: Exception | None = None  # what the waiter is told
    ident: Identity | None = None  # its file's identity, taken with its fsync
    fsynced: bool = False  # its fsync hop was done (a refused version is not fsynced again)
    told: bool = False  # the waiter was told (a refused version is retried after that)
    refusals: int = 0  # times the journal refused to queue it
    refusal: LocalError | None = None  # why it refused, the last time


def _fsync_and_identify(batch: list[_Closed]) -> None:
    """In a worker thread: fsync the batch's files (of linked nodes: an unlinked one is never
    queued) and take each one's identity for its job row, both off the trio thread. A file
    that cannot be made durable is still queued, at once, as interrupted (kept, never
    uploaded: its bytes may not be what was written), and its waiter is told."""
    batch = [c for c in batch if not c.fsynced]
    failed = durability.fsync_all([c.fd for c in batch if c.node.linked])
    for c in batch:
        c.fsynced = True
        if not c.node.linked:
            continue
        try:
            c.ident = identity_fd(c.fd)  # (also of a file whose fsync failed)
        except OSError as e:
            failed.setdefault(c.fd, e)
            c.ident = (0, 0, 0, "")  # what it holds is unknown: no continuing matches it
        why = failed.get(c.fd)
        if why is None:
            continue
        c.broken = c.broken or f"its bytes could not be made durable ({why.strerror or why})"
        c.error = LocalError(
            f"cannot make {c.path} durable ({why.strerror or why}); it is kept, interrupted,"
            " and not uploaded",
            err=why.errno or errno.EIO,
        )


# seconds between two tries to queue a version the journal refused (a full or failing
# state disk), doubling up to the second
REQUEUE_FIRST, REQUEUE_MAX = 0.5, 8.0


def _refused(path: str, e: StateError | OSError) -> LocalError:
    """What a waiter is told when the journal refused its version: one clear line."""
    # (a StateError says what SQLite said; the line below names the state database)
    why = (e.strerror or str(e)) if isinstance(e, OSError) else str(e.__cause__ or e)
    return LocalError(
        f"cannot record the closed file {path} in the state database ({why}); it is kept "
        "and queued as soon as the state disk takes it",
        err=e.errno or errno.EIO,
    )


class Versions:
    def __init__(
        self,
        *,
        journal: Journal,
        open_versions: OpenVersions,
        cache: Cache,
        clean: CleanCache,
        attrs: AttrStore,
        inodes: InodeTable,
        handles: Handles,
        uploader: Uploader,
        fetch_whole: FetchWhole,
        delay: float,
    ) -> None:
        self.journal = journal
        self.open_versions = open_versions
        self.cache = cache
        self.clean = clean
        self.attrs = attrs
        self.inodes = inodes
        self.handles = handles
        self.uploader = uploader
        self.fetch_whole = fetch_whole
        self.delay = delay
        self.on_aside: Callable[[], None] = lambda: None  # versions went to the recovery folder
        self._locks: dict[int, trio.Lock] = {}
        # makes every commit so far power-cut durable (the daemon's WAL sync); None: each
        # commit already is
        self.durable: Callable[[], Awaitable[None]] | None = None
        # versions closed (their last writer's RELEASE came) waiting to be queued by ``run``
        self._closed: list[_Closed] = []
        self._closed_came = trio.Event()
        self._closed_many = trio.Event()
        self._publisher = False  # ``run`` is running: the kernel's RELEASE need not wait
        self._nursery: trio.Nursery | None = None  # ``run``'s: versions waiting behind a lock
        # versions of a file whose next version holds its lock, in close order, per inode
        self._behind: dict[int, list[_Closed]] = {}
        self._fsyncing: list[_Closed] = []  # taken from the queue, their fsync hop under way
        self._retrying: set[int] = set()  # inodes whose ``_behind`` a task works through
        self._fsynced = trio.Event()  # set at the end of each fsync hop
        uploader.on_job_end.append(self.job_ended)

    # -- what stands for a node ----------------------------------------------------------
    def remote_id(self, node: Node) -> str | None:
        """The drive file that currently stands for ``node`` (what a new version replaces)."""
        if node.job_id is not None:
            job = self.journal.get(node.job_id)
            if job is not None and job.file_id and (job.state == "done" or job.landed_at):
                return job.file_id
            if job is not None and job.state not in ("done", "superseded"):
                return job.replaces_file_id or node.file_id
        if node.version_open and node.cache_path and node.file_id is None:
            # a version still open (or its close not yet queued) replaces this drive file
            v = self.open_versions.get(node.cache_path)
            if v is not None and v.replaces_file_id:
                return v.replaces_file_id
        return node.file_id

    def _lock(self, node: Node) -> trio.Lock:
        return self._locks.setdefault(node.ino, trio.Lock())

    def _unlock_idle(self, node: Node, lock: trio.Lock) -> None:
        if not lock.locked() and not lock.statistics().tasks_waiting:
            self._locks.pop(node.ino, None)

    # -- a version comes to be -------------------------------------------------------------
    async def ensure(self, h: Handle, *, truncate: bool = False) -> None:
        """The writer ``h`` is about to change bytes: make sure it writes a version (empty,
        with ``truncate``: nothing is copied that would be cut at once)."""
        if h.version is None:
            node = h.node
            lock = self._lock(node)
            try:
                async with lock:
                    if _version(h) is None:  # another task may have made it meanwhile
                        await self._queue_closed(node)
                        await self._attach(h, copy=not truncate)
            finally:
                self._unlock_idle(node, lock)
        if truncate:
            self.cache.truncate(h.fd, 0)
            h.node.size = 0

    async def _attach(self, h: Handle, *, copy: bool) -> None:
        node = h.node
        path = node.cache_path
        if node.writers and node.version_open and path is not None:
            fd = self.cache.open(path)  # another writer has this version open already: share it
        elif (path := self._reopen(node, truncating=not copy)) is not None:
            fd = self.cache.open(path)  # nothing depends on the current version's bytes: in place
        else:
            path, fd = await self._new_file(node, copy=copy)
        Handles.close_fd(h)  # the descriptor it read the previous bytes through
        h.fd = fd
        h.version = path
        node.writers += 1

    @contextlib.asynccontextmanager
    async def settled(self, *nodes: Node) -> AsyncIterator[None]:
        """Hold the version locks of the files among ``nodes`` (in inode order), their closed
        versions queued first: a rename or unlink then sees every version of the names as a
        job (and takes its landing lock), and none is queued under the old name while it
        runs (one queued mid-rename could land there, past the locks the rename holds, and
        stay under the name renamed away)."""
        files = sorted({n.ino: n for n in nodes if not n.is_dir}.values(), key=lambda n: n.ino)
        async with contextlib.AsyncExitStack() as stack:
            for node in files:
                lock = self._lock(node)
                stack.callback(self._unlock_idle, node, lock)
                await stack.enter_async_context(lock)
                await self._queue_closed(node)
            yield

    def _record(self, node: Node, path: str) -> None:
        self.inodes.note_version(path, node)
        node.cache_path, node.dirty, node.version_open = path, True, True
        if not node.linked:
            return  # its name went while the bytes were copied: never a crash marker
        parent = self.inodes[node.parent]
        assert parent.file_id is not None
        self.open_versions.add(
            cache_path=path,
            parent_file_id=parent.file_id,
            name=node.drive_name,
            remote_path=self.inodes.path(node),
            replaces_file_id=self.remote_id(node),
        )

    def _reopen(self, node: Node, *, truncating: bool = False) -> str | None:
        """The current version is queued but nothing on the drive depends on it yet (no
        session; or interrupted, or failed, unless this write truncates it: those bytes are
        on no drive, so a new version takes the name and they go to the recovery folder):
        it becomes an open version again, same file.
        The open-version row is written before the job row goes: a crash between the two
        leaves the job as it was (start-up drops the duplicate open-version row)."""
        if node.job_id is None or node.cache_path is None:
            return None
        job = self.journal.get(node.job_id)
        if job is None or job.source != node.cache_path or job.id in self.uploader.running:
            return None
        kept = job.state in ("interrupted", "failed") and not truncating
        # a rapid create may have made its file (its answer lost): that file depends on it
        unsent = job.state == "pending" and not job.file_id and job.rapid_at is None
        if job.landed_at is not None or not (kept or unsent):
            return None
        path = job.source
        log.debug("job %d reopened for writing: %s", job.id, job.remote_path)
        self._record(node, path)
        if not self.journal.unpublish(job.id):
            self.open_versions.remove(path)
            return None
        if job.replaces_file_id:
            self.open_versions.set_replaces(path, job.replaces_file_id)
        node.job_id = None
        return path

    async def _new_file(self, node: Node, *, copy: bool) -> tuple[str, int]:
        """A new cache file for a new version, open for writing: empty, or a copy of the
        node's current bytes (downloaded first where only the drive has them), copied in a
        worker thread."""
        src: str | None = None
        if copy and node.size:
            src = node.cache_path
            if src is None and node.file_id is not None:
                src = await self.fetch_whole(node)
        if src is None:
            path, fd = self.cache.create()
        else:
            path = await trio.to_thread.run_sync(self.cache.new_file, src)
            fd = self.cache.open(path)
        try:
            self._record(node, path)
        except BaseException:
            os.close(fd)
            raise
        return path, fd

    async def new_file_version(self, node: Node, content: bytes = b"") -> Handle:
        """``create`` (and a symbolic link): a new, empty version, written by the caller."""
        h = self.handles.add(node, -1, write=True, append=False)
        h.version, h.fd = await self._new_file(node, copy=False)
        node.writers += 1
        node.size = 0
        if content:
            self.write(h, 0, content)
        return h

    # -- writing -------------------------------------------------------------------------
    def write(self, h: Handle, off: int, data: bytes) -> int:
        node = h.node  # O_APPEND offsets come from the kernel (it knows the size we report)
        try:
            n = self.cache.pwrite(h.fd, data, off)
        except CacheFullError:
            # this version is incomplete: it must never be uploaded as if it were whole
            node.extra["write_error"] = "cache disk full"
            raise
        node.size = max(node.size, off + n)
        node.mtime_ns = node.ctime_ns = max(node.mtime_ns, file_time_ns())
        return n

    async def truncate(self, h: Handle, size: int) -> None:
        await self.ensure(h, truncate=size == 0)
        if size:
            self.cache.truncate(h.fd, size)
        h.node.size = size
        h.node.mtime_ns = h.node.ctime_ns = time.time_ns()

    def flush(self, h: Handle) -> None:
        """close(): if this is the last writer, record the version's size and mtime durably,
        so a daemon stopped before the RELEASE that follows still knows it was closed whole.
        No fsync of the data here (close() would wait for it; RELEASE does it): after a
        power cut, a file whose data did not reach the disk no longer matches the record
        (the file system orders size updates after data), so it counts as interrupted."""
        if not h.write or h.fd < 0 or h.version is None or h.node.writers != 1:
            return
        st = os.fstat(h.fd)
        self.open_versions.mark_flushed(h.version, st.st_size, st.st_mtime_ns)

    async def fsync(self, h: Handle) -> None:
        """``fsync()``: the version's bytes and its record are durable when this returns
        (the record's commit is power-cut durable only once the WAL is synced)."""
        if h.write and h.fd >= 0:
            await trio.to_thread.run_sync(os.fsync, h.fd)
            if self.durable is not None:
                await self.durable()

    async def release(self, h: Handle, *, grouped: bool = False) -> None:
        """A writer's handle goes; the last writer of a version publishes it, in the order
        the writers of one file closed (a new writer may open the next version meanwhile).
        ``grouped``: nobody waits for this (the kernel's RELEASE): while ``run`` runs, the
        version is queued by it, with the others closed in the same moment, and this
        returns at once."""
        node = h.node
        if h.version is None:
            return
        node.writers -= 1
        if node.writers:
            return
        crashpoint.reach("release_before_publish")
        # the handle's descriptor and this version's write error go with it (a write error
        # of the next version, opened meanwhile, is that version's)
        waits = not (grouped and self._publisher)
        c = _Closed(node, h.fd, h.version, trio.Event() if waits else None,
                    node.extra.pop("write_error", None))  # fmt: skip
        h.fd = -1
        if self._publisher:
            # one queue, in close order (so versions of one file are queued in order)
            self._closed.append(c)
            self._closed_came.set()
            if c.done is not None or len(self._closed) >= durability.GROUP:
                self._closed_many.set()  # someone waits: now
        else:
            await self._publish_batch([c])  # no ``run`` (yet, or any more): at once
        if c.done is not None:
            await c.done.wait()
            if c.error is not None:
                raise c.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Queue the versions whose last writer closed, for as long as the mount lives, so
        that the kernel's RELEASE is answered at once (a RELEASE waiting holds one of the
        kernel's few slots for background requests, which the writeback of the next files
        needs), and the versions closed within ``durability.WINDOW`` of each other share
        one fsync hop. Cancelled (unmount), it still queues every version closed before."""
        self._publisher = True
        task_status.started()
        try:
            async with trio.open_nursery() as self._nursery:
                while True:
                    await self._closed_came.wait()
                    with trio.move_on_after(durability.WINDOW):
                        await self._closed_many.wait()
                    batch, self._closed = self._closed, []
                    self._closed_came, self._closed_many = trio.Event(), trio.Event()
                    with trio.CancelScope(shield=True):  # a batch is never cut in half
                        await self._publish_batch(batch)
        finally:
            self._publisher = False
            self._nursery = None
            with trio.CancelScope(shield=True):
                batch = [c for cs in self._behind.values() for c in cs] + self._closed
                self._behind, self._closed = {}, []
                await self._publish_batch(batch)  # waits for locks: their holders are gone
                if self.durable is not None:
                    await self.durable()  # what was queued last is in the final sync

    @property
    def closing(self) -> bool:
        """Versions whose last writer closed are still to be queued."""
        return bool(self._closed or self._behind or self._fsyncing)

    async def _queue_closed(self, node: Node) -> None:
        """Before a newer version of ``node`` is made (its lock held), the versions of it
        that closed and wait for ``run`` are queued, in order: a file has at most one version
        not yet a job, so a rename over it or its unlink (which supersede jobs and drop that
        one open version) leaves no older version behind to come back after a crash."""
        while any(c.node is node for c in self._fsyncing):
            await self._fsynced.wait()  # it goes behind this lock: taken below
        mine = self._behind.pop(node.ino, []) + [c for c in self._closed if c.node is node]
        if not mine:
            return
        self._closed = [c for c in self._closed if c.node is not node]
        await trio.to_thread.run_sync(_fsync_and_identify, mine)
        for i, c in enumerate(mine):
            if not self._publish_one(c, locked=True):
                if self._nursery is None:
                    for rest in mine[i:]:
                        self._settle(rest, rest.error)
                else:  # it and the ones after it stay first in line, retried
                    self._behind[node.ino] = mine[i:] + self._behind.get(node.ino, [])
                    self._retry_behind(node)
                # nothing newer of this file is made (or renamed, or unlinked) meanwhile
                assert c.refusal is not None
                raise c.refusal

    def drop_queue(self) -> None:
        """What waits to be queued is dropped as a SIGKILL drops it (its open-version rows
        stay: the next start queues it): an in-process crash, for the tests' cores."""
        for c in [c for cs in self._behind.values() for c in cs] + self._closed:
            os.close(c.fd)
        self._behind, self._closed = {}, []

    async def _publish_batch(self, batch: list[_Closed]) -> None:
        """fsync the batch's files in one worker-thread hop, then queue each in order. A
        file whose next version is being made (its lock held: a copy of a big file may
        take long) waits behind it in a task of its own, so no other file waits for it."""
        self._fsyncing += batch
        try:
            await trio.to_thread.run_sync(_fsync_and_identify, batch)
        finally:
            self._fsyncing = [c for c in self._fsyncing if c not in batch]
            self._fsynced.set()
            self._fsynced = trio.Event()
        group: list[_Closed] = []  # ready, of distinct files: queued in one transaction
        for c in batch:
            if any(g.node is c.node for g in group):
                self._publish_group(group)  # (a file's versions: one at a time)
            if self._ready(c):
                group.append(c)
                continue
            self._publish_group(group)  # (what follows keeps its close order)
            if c.node.ino in self._behind or self._lock(c.node).locked():
                if self._nursery is not None:
                    self._wait_behind(c)
                else:  # no ``run`` (yet, or any more): wait for the holder here
                    await self._publish_locking(c)
            elif self._publish_one(c):  # lock free: no checkpoint
                pass
            elif self._nursery is not None:
                self._wait_behind(c)  # refused: retried, and later closes of it wait behind
            else:
                self._settle(c, c.error)  # no ``run`` to retry it: the next start queues it
        self._publish_group(group)

    def _ready(self, c: _Closed) -> bool:
        """May ``c`` be queued in a group (``_publish_group``)? Its file's lock is free and
        nothing of it waits behind, ``run`` retries a refusal, and queueing it is only the
        journal's writes (a version whose name went, or with no record, is handled alone)."""
        return (
            self._nursery is not None
            and c.node.ino not in self._behind
            and not self._lock(c.node).locked()
            and c.node.linked
            and self.open_versions.get(c.path) is not None
        )

    def _publish_group(self, group: list[_Closed]) -> None:
        """Queue ``group`` (versions of distinct files, each ``_ready``) in one transaction,
        and empty it: a burst of small files pays one commit, one write of the pages their
        rows share, instead of one per file. Each is queued in a savepoint, so one the
        journal refuses is refused alone (and retried behind its lock, as ``_publish_one``'s);
        a refused commit refuses them all, before anything of them changed in memory. No
        await."""
        members = group[:]
        group.clear()
        if len(members) < 2:
            for c in members:
                if not self._publish_one(c):
                    self._wait_behind(c)
            return
        conn = self.journal.conn
        locks = [self._lock(c.node) for c in members]
        for lock in locks:
            lock.acquire_nowait()
        applies: list[tuple[_Closed, Callable[[], None] | None]] = []
        refused: list[tuple[_Closed, StateError | OSError]] = []
        failed: list[tuple[_Closed, Exception]] = []  # not queued: left for the next start
        try:
            try:
                with transaction(conn):
                    for c in members:
                        try:
                            with savepoint(conn):
                                applies.append((c, self._queue(c.node, c.path, c.broken,
                                                               c.ident)))  # fmt: skip
                        except (StateError, OSError) as e:
                            refused.append((c, e))
                        except Exception as e:  # (as ``_publish_one``)
                            failed.append((c, e))
                        if not conn.in_transaction:  # SQLite rolled it all back (the disk)
                            raise StateError("the state database rolled back a transaction")
            except (StateError, OSError) as e:  # BEGIN or COMMIT: none of them is queued
                done = {id(c) for c, _ in refused + failed}
                refused += [(c, e) for c in members if id(c) not in done]
                applies = []
            if refused or failed:
                self.open_versions.reload()  # the rows as the commit (or rollback) left them
            for c, apply in applies:
                try:
                    if apply is not None:
                        apply()
                except Exception as e:  # queued, but what follows in memory failed
                    log.error("queued %s, then failed (%s)", c.path, e)
                    self._settle(c, e)
                else:
                    self._queued(c)
        finally:
            for c, lock in zip(members, locks, strict=True):
                lock.release()
                self._unlock_idle(c.node, lock)
        for c, err in failed:
            log.error("cannot queue %s (%s); left for the next start", c.path, err)
            self._settle(c, err)
        for c, why in refused:
            self._refuse(c, why)
            self._wait_behind(c)

    def _wait_behind(self, c: _Closed) -> None:
        behind = self._behind.get(c.node.ino)
        if behind is not None:
            behind.append(c)  # after the ones of that file already waiting
            return
        self._behind[c.node.ino] = [c]
        assert self._nursery is not None
        self._nursery.start_soon(self._publish_behind, c.node)

    def _retry_behind(self, node: Node) -> None:
        """The versions of ``node`` in ``_behind`` get a task of their own (if none runs)."""
        if self._nursery is not None and node.ino not in self._retrying:
            self._nursery.start_soon(self._publish_behind, node)

    async def _publish_locking(self, c: _Closed) -> None:
        lock = self._lock(c.node)
        try:
            async with lock:
                if not self._publish_one(c, locked=True):
                    self._settle(c, c.error)  # no ``run`` to retry it: the next start does
        finally:
            self._unlock_idle(c.node, lock)

    async def _publish_behind(self, node: Node) -> None:
        """Queue the versions of ``node`` waiting behind its lock, in order; one the journal
        refuses is tried again, with a growing pause, until it is queued (``run``'s nursery
        ending, at unmount, leaves it to the last batch)."""
        lock = self._lock(node)
        self._retrying.add(node.ino)
        pause = REQUEUE_FIRST
        try:
            while True:
                async with lock:  # (a writer of the next version may have queued them)
                    cs = self._behind.get(node.ino)
                    if not cs:
                        return
                    queued = self._publish_one(cs[0], locked=True)
                    if queued:
                        cs.pop(0)
                        if not cs:
                            del self._behind[node.ino]
                if not queued:
                    await trio.sleep(pause)
                    pause = min(pause * 2, REQUEUE_MAX)
        finally:
            self._retrying.discard(node.ino)
            self._unlock_idle(node, lock)

    def _publish_one(self, c: _Closed, *, locked: bool = False) -> bool:
        """Queue ``c``; False if the journal refused it (the state disk full or failing: it
        stays to be retried, and its waiter is told now)."""
        lock = self._lock(c.node)
        try:
            if not locked:
                lock.acquire_nowait()
            try:
                self._publish(c.node, c.path, c.broken, c.ident)
            finally:
                if not locked:
                    lock.release()
        except (StateError, OSError) as e:
            self._refuse(c, e)
            return False
        except Exception as e:
            log.error("cannot queue %s (%s); left for the next start", c.path, e)
            self._settle(c, e)
        else:
            self._queued(c)
        finally:
            if not locked:
                self._unlock_idle(c.node, lock)
        return True

    def _refuse(self, c: _Closed, e: StateError | OSError) -> None:
        """The journal refused to queue ``c``: it stays to be retried; its waiter is told."""
        c.refusals += 1
        if c.refusals == 1:
            log.error("cannot queue %s (%s); trying again", c.path, e)
        c.refusal = _refused(c.path, e)
        self._tell(c, c.refusal)

    def _queued(self, c: _Closed) -> None:
        if c.refusals:
            log.warning("queued %s after %d refusal(s)", c.path, c.refusals)
        self._settle(c, c.error)

    def _tell(self, c: _Closed, error: Exception | None) -> None:
        if not c.told:
            c.told = True
            c.error = error
            if c.done is not None:
                c.done.set()

    def _settle(self, c: _Closed, error: Exception | None) -> None:
        """The version is queued, or could not be (its open-version row stays: the next
        start queues it); whoever waits is told (if not told already)."""
        os.close(c.fd)
        self._tell(c, error)

    def _publish(
        self, node: Node, path: str, broken: str | None, ident: Identity | None = None
    ) -> None:
        """Its bytes are on disk (fsynced, before its job row can be: a power cut must never
        leave a job whose file lost what it was queued with): queue it. No await."""
        apply = self._queue(node, path, broken, ident)
        if apply is not None:
            apply()

    def _queue(
        self, node: Node, path: str, broken: str | None, ident: Identity | None
    ) -> Callable[[], None] | None:
        """``_publish``'s writes, in one transaction (or the caller's: ``_publish_group``);
        returns what follows in memory, for the caller to do once they are committed (None:
        nothing follows)."""
        v = self.open_versions.get(path)
        if not node.linked:
            self.open_versions.remove(path)
            if node.cache_path == path:
                node.version_open = False
            self._discard(node, path)
            return None
        if v is None:
            log.warning("no record of the version in %s; left for the next start", path)
            return None
        parent = self.inodes[node.parent]
        assert parent.file_id is not None
        aside = self.journal.set_aside_count
        try:
            # queued, its open-version row gone, its attributes re-keyed: one commit
            with transaction(self.journal.conn):
                job, superseded = self.journal.add(
                    source=path,
                    parent_file_id=parent.file_id,
                    name=node.drive_name,
                    remote_path=self.inodes.path(node),
                    replaces_file_id=self.remote_id(node) or v.replaces_file_id,
                    state="interrupted" if broken else "pending",
                    not_before=time.time() + self.delay if self.delay > 0 else None,
                    set_aside=True,
                    ident=ident,
                    error=broken,
                )
                crashpoint.reach("publish_after_journal")
                self.open_versions.remove(path)
                self.save_attrs(node, version_key(path))
        except BaseException:
            self.open_versions.reload()  # the rows as the rolled-back transaction left them
            raise
        moved_aside = self.journal.set_aside_count != aside

        def apply() -> None:
            if moved_aside:
                self.on_aside()
            node.job_id = job.id
            log.debug("queued job %d %s replaces %s, superseding %s", job.id,
                      job.remote_path, job.replaces_file_id, superseded)  # fmt: skip
            if node.cache_path == path:
                node.version_open = False
            for old in superseded:
                if old not in self.uploader.running:
                    self.job_ended(old)
            if broken:
                log.warning("not uploading %s: a write failed (%s)", job.remote_path, broken)
                return
            self.uploader.wake()

        return apply

    def _discard(self, node: Node, path: str) -> None:
        """A version whose name went before it was queued: its bytes go with the last
        handle that may still read them."""
        if not any(x.fd >= 0 and x.node is node for x in self.handles.of(node)):
            self.cache.remove(path)
            self.attrs.drop(version_key(path))
            self.inodes.settle_version(path)
            if node.cache_path == path:
                node.cache_path = None

    def forgotten(self, node: Node) -> None:
        """An unlinked node's last handle closed: free what only it used."""
        if node.linked or node.open_handles:
            return
        path = node.cache_path
        if path is None:
            return
        kept = self.journal.by_source(path)
        if kept is not None and kept.parent_file_id == RECOVERED_ID:
            return  # set aside in the recovery folder: its own node reads it
        if node.job_id is not None:
            self.job_ended(node.job_id)
        elif self.open_versions.get(path) is None:
            self._discard(node, path)

    # -- attributes -------------------------------------------------------------------------
    def save_attrs(self, node: Node, key: str | None = None) -> None:
        """Keep what ``chmod``/``chown``/``touch`` set, under the node's current identity."""
        if key is None and node.dirty and node.cache_path:
            key = version_key(node.cache_path)
        elif key is None and node.file_id:
            key = drive_key(node.file_id)
        if key is None:
            return
        self.attrs.put(key, Attrs(node.mode, node.uid, node.gid, node.atime_ns, node.mtime_ns))

    # -- an upload ended ---------------------------------------------------------------------
    def _ours(self, source: str) -> bool:
        return os.path.dirname(source) == str(self.cache.data)

    def job_ended(self, job_id: int) -> None:
        """Called whenever an upload stops (any outcome), and for superseded versions that
        never started. No await."""
        job = self.journal.get(job_id)
        if job is None or not self._ours(job.source):
            return  # `panfs upload` of a user's file: nothing of ours to settle
        if job.state == "done" and job.file_id:
            self._landed(job, job.file_id)
            self.inodes.settle_version(job.source)
        elif job.state == "superseded" and not self._in_use(job.source):
            if job.rapid_at is not None and not job.file_id:
                # its lost create may have made a file: the reaper's sweep looks for it by
                # these bytes (and trashes it), then ends the version again
                return
            if self.open_versions.get(job.source) is None:
                self.cache.remove(job.source)
                self.attrs.drop(version_key(job.source))
                self.inodes.settle_version(job.source)
            if job.file_id is None:
                # nothing of it is on the drive: no listing needs the row to hide it
                self.journal.remove(job.id)

    def _landed(self, job: Job, file_id: str) -> None:
        self.inodes.landed_in(job.parent_file_id)  # its row goes below: listings under way
        self.open_versions.landed(job.parent_file_id, job.name, file_id)
        node = self.inodes.version_owner(job.source)  # no scan of every node per upload
        if node is not None:
            self.inodes.entry_changed(node)
            if node.job_id == job.id:
                node.job_id = None
            if node.cache_path == job.source:
                node.file_id = file_id
                node.cache_path, node.dirty = None, False  # clean now: served from the cache
            elif node.cache_path is not None:
                # a newer local version exists: what just landed is what it replaces
                node.file_id = file_id
                if self.open_versions.get(node.cache_path) is not None:
                    self.open_versions.set_replaces(node.cache_path, file_id)
                if node.job_id is not None:
                    self.journal.set_replaces(node.job_id, file_id)
            else:
                node.file_id = file_id
        self.attrs.rekey(version_key(job.source), drive_key(file_id))
        self.clean.adopt(file_id, job.source, job.size)
        self.journal.forget_done(job.id, file_id)  # the file stays known a while

    def _in_use(self, path: str) -> bool:
        node = self.inodes.version_owner(path)
        if node is None or node.cache_path != path:
            return False
        return self.inodes.alive(node)
