"""The filesystem core: names, inodes, open handles and the policy of when data is durable.

Owns: every filesystem operation in drive terms (what ``docs/semantics.md``
promises), the merge of the drive's listings with local pending versions (local
wins), and the write path: a version is written to its own cache file, recorded
durably before its first byte (so a crash leaves it ``interrupted``, never
uploaded as complete), and handed to the journal on the last close or fsync.
Must not: import pyfuse3 (``fs.py`` translates), speak HTTP (the client does),
or build SQL beyond its one table of open versions (``pending.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from panfs import crashpoint
from panfs.attrs import Attrs, AttrStore, drive_key, version_key
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.errors import (
    CacheFullError,
    ExistsError,
    IsDirError,
    NameTooLongError,
    NotDirError,
    NotEmptyError,
    NotFoundError,
    RemoteNotFoundError,
    UnsupportedError,
)
from panfs.inodes import ROOT_INO, InodeTable, Node
from panfs.journal import ACTIVE, Journal
from panfs.pending import OpenVersions
from panfs.reader import RangeReader
from panfs.readpath import ReadPath
from panfs.remote.client import OpenApiClient
from panfs.settle import Settler
from panfs.uploader import Uploader

log = logging.getLogger(__name__)

MAX_NAME = 1024


@dataclass
class Handle:
    fh: int
    node: Node
    fd: int  # cache file descriptor, -1 for a read of drive-only bytes
    write: bool
    append: bool
    version: str | None = None  # writers: the cache file of the version they write


def _parse_time(s: str) -> int:
    if not s:
        return 0
    try:
        from datetime import datetime

        return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 0


def check_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME:
        raise NameTooLongError(f"name over {MAX_NAME} bytes: {name[:40]}…")


class Core:
    """One mounted drive. All methods run on the trio thread; sync helpers never await."""

    def __init__(
        self,
        *,
        client: OpenApiClient,
        journal: Journal,
        uploader: Uploader,
        cache: Cache,
        versions: OpenVersions,
        clean: CleanCache,
        attrs: AttrStore,
        list_ttl: float,
        uid: int,
        gid: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.journal = journal
        self.uploader = uploader
        self.cache = cache
        self.versions = versions
        self.list_ttl = list_ttl
        self.uid, self.gid = uid, gid
        self.clock = clock
        self.inodes = InodeTable(uid, gid, time.time_ns())
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self.clean = clean
        self.reads = ReadPath(RangeReader(client), clean)  # daemon runs its read-ahead
        self.attrs = attrs
        self.settler = Settler(
            journal=journal, versions=versions, clean=clean, attrs=attrs, cache=cache,
            inodes=self.inodes,
        )  # fmt: skip
        uploader.on_job_end.append(self.settler.job_ended)
        self._space: tuple[float, int, int] | None = None
        self._publishing: dict[int, trio.Lock] = {}

    # -- start-up ----------------------------------------------------------------
    def recover(self) -> list[int]:
        """After any stop: cut-off writers become ``interrupted`` jobs, uploaded versions
        become clean cache, stray cache files go (``settle.Settler.at_start``)."""
        return self.settler.at_start()

    # -- namespace -------------------------------------------------------------
    def node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise NotFoundError(f"stale inode {ino}")
        return node

    def _remote_path(self, parent: Node, name: str) -> str:
        base = self.inodes.path(parent)
        return (base.rstrip("/") + "/" + name) if name else base

    async def _listing(self, folder: Node, force: bool = False) -> dict[str, int]:
        if not folder.is_dir:
            raise NotDirError(f"not a folder: {self.inodes.path(folder)}")
        fresh = folder.children is not None and self.clock() - folder.listed_at < self.list_ttl
        if fresh and not force:
            assert folder.children is not None
            return folder.children
        assert folder.file_id is not None
        items = await self.client.list_folder(folder.file_id)
        self._merge(folder, items)
        folder.listed_at = self.clock()
        assert folder.children is not None
        return folder.children

    def _merge(self, folder: Node, items: list) -> None:  # type: ignore[type-arg]
        """Fold a drive listing into ``folder``; local pending versions win. No await."""
        if folder.children is None:
            folder.children = {}
        seen: set[str] = set()
        assert folder.file_id is not None
        hidden = self.journal.superseded_file_ids(folder.file_id)
        for item in items:
            if item.file_id in hidden:
                continue
            seen.add(item.name)
            node = self.inodes.child(folder, item.name)
            if node is None:
                node = self.inodes.add(folder, item.name, item.is_dir, uid=self.uid, gid=self.gid)
            elif node.is_dir != item.is_dir:
                continue  # local and remote disagree on the kind: keep the local view
            self._adopt_remote(node, item)
        # pending versions of this folder that the listing cannot show yet
        # (interrupted ones too, at the size they reached: finish them with `rsync
        # --append-verify` or a new cp, or remove them)
        for job in self.journal.jobs((*ACTIVE, "interrupted")):
            if job.parent_file_id != folder.file_id:
                continue
            node = self.inodes.child(folder, job.name)
            if node is None:
                node = self.inodes.add(folder, job.name, False, uid=self.uid, gid=self.gid)
            if node.is_dir or (node.job_id is not None and node.job_id > job.id) or node.writers:
                continue
            self._adopt_job(node, job.id, job.source, job.size)
            seen.add(job.name)
        for name, ino in list(folder.children.items()):
            node = self.inodes[ino]
            if name not in seen and not node.dirty and not node.writers:
                self.inodes.detach(node)

    def _adopt_remote(self, node: Node, item) -> None:  # type: ignore[no-untyped-def]
        if node.dirty or node.writers:
            return  # local changes win over the drive's view
        if node.file_id != item.file_id or not node.mtime_ns:
            node.file_id = item.file_id
            t = _parse_time(item.updated_at)
            node.mtime_ns = node.ctime_ns = node.atime_ns = t or time.time_ns()
            self._apply_attrs(node, drive_key(item.file_id))
        if not node.is_dir:
            node.size = item.size

    def _apply_attrs(self, node: Node, key: str) -> None:
        a = self.attrs.get(key)
        if a is not None:
            node.mode, node.uid, node.gid = a.mode, a.uid, a.gid
            node.atime_ns, node.mtime_ns = a.atime_ns, a.mtime_ns

    def _save_attrs(self, node: Node, key: str | None = None) -> None:
        """Keep what ``chmod``/``chown``/``touch`` set, under the node's current identity."""
        if key is None and node.dirty and node.cache_path:
            key = version_key(node.cache_path)
        elif key is None and node.file_id:
            key = drive_key(node.file_id)
        if key is None:
            return
        self.attrs.put(key, Attrs(node.mode, node.uid, node.gid, node.atime_ns, node.mtime_ns))

    def _adopt_job(self, node: Node, job_id: int, source: str, size: int) -> None:
        node.job_id, node.cache_path, node.dirty, node.size = job_id, source, True, size
        self.inodes.note_version(source, node)
        if not node.mtime_ns:
            node.mtime_ns = node.ctime_ns = node.atime_ns = time.time_ns()
            self._apply_attrs(node, version_key(source))

    async def lookup(self, parent_ino: int, name: str) -> Node:
        parent = self.node(parent_ino)
        check_name(name)
        children = await self._listing(parent)
        ino = children.get(name)
        if ino is None:
            raise NotFoundError(f"no such entry: {self._remote_path(parent, name)}")
        node = self.inodes[ino]
        node.lookups += 1
        return node

    def forget(self, pairs: list[tuple[int, int]]) -> None:
        for ino, n in pairs:
            self.inodes.forget(ino, n)

    async def readdir(self, ino: int) -> list[Node]:
        folder = self.node(ino)
        children = await self._listing(folder)
        return [self.inodes[i] for _, i in sorted(children.items())]

    # -- folders ---------------------------------------------------------------
    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Node:
        parent = self.node(parent_ino)
        check_name(name)
        if name in await self._listing(parent):
            raise ExistsError(f"exists: {self._remote_path(parent, name)}")
        assert parent.file_id is not None
        res = await self.client.create_folder(parent.file_id, name, check_name_mode="refuse")
        if res.exist:
            raise ExistsError(f"exists on the drive: {self._remote_path(parent, name)}")
        now = time.time_ns()
        node = self.inodes.add(
            parent,
            name,
            True,
            file_id=res.file_id,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime_ns=now,
            ctime_ns=now,
            atime_ns=now,
        )
        node.children, node.listed_at = {}, self.clock()
        node.lookups += 1
        self._save_attrs(node)
        return node

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self.node(parent_ino)
        node = await self._child(parent, name)
        if not node.is_dir:
            raise NotDirError(f"not a folder: {self._remote_path(parent, name)}")
        if await self._listing(node, force=True):
            raise NotEmptyError(f"folder not empty: {self._remote_path(parent, name)}")
        assert node.file_id is not None
        await self.client.trash(node.file_id)
        self.inodes.detach(node)

    async def _child(self, parent: Node, name: str) -> Node:
        check_name(name)
        ino = (await self._listing(parent)).get(name)
        if ino is None:
            raise NotFoundError(f"no such entry: {self._remote_path(parent, name)}")
        return self.inodes[ino]

    # -- files: open / create --------------------------------------------------
    def _handle(self, node: Node, fd: int, write: bool, append: bool) -> Handle:
        h = Handle(self._next_fh, node, fd, write, append, node.cache_path if write else None)
        self._next_fh += 1
        self.handles[h.fh] = h
        node.open_handles += 1
        return h

    async def create(
        self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[Handle, Node]:
        parent = self.node(parent_ino)
        check_name(name)
        existing = self.inodes.child(parent, name)
        if existing is None and name in await self._listing(parent):
            existing = self.inodes.child(parent, name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise ExistsError(f"exists: {self._remote_path(parent, name)}")
            if existing.is_dir:
                raise IsDirError(f"is a folder: {self._remote_path(parent, name)}")
            existing.lookups += 1
            h = await self.open(existing.ino, flags | os.O_TRUNC | os.O_WRONLY)
            return h, existing
        now = time.time_ns()
        node = self.inodes.add(
            parent,
            name,
            False,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime_ns=now,
            ctime_ns=now,
            atime_ns=now,
        )
        node.lookups += 1
        fd = self._new_version(node, truncate=True, src=None)
        return self._handle(node, fd, True, bool(flags & os.O_APPEND)), node

    def remote_id(self, node: Node) -> str | None:
        """The drive file that currently stands for ``node`` (what a new version replaces)."""
        if node.job_id is not None:
            job = self.journal.get(node.job_id)
            if job is not None and job.state == "done" and job.file_id:
                node.file_id = job.file_id
            elif job is not None and job.state in ACTIVE and job.replaces_file_id:
                return job.replaces_file_id
        return node.file_id

    def _new_version(self, node: Node, *, truncate: bool, src: str | None) -> int:
        """Start a new local version of ``node``; durable record before any byte. No await."""
        parent = self.inodes[node.parent]
        assert parent.file_id is not None
        path = self.cache.new_file(copy_from=None if truncate else src)
        self.inodes.note_version(path, node)
        self.versions.add(
            cache_path=path,
            parent_file_id=parent.file_id,
            name=node.name,
            remote_path=self.inodes.path(node),
            replaces_file_id=self.remote_id(node),
        )
        node.cache_path, node.dirty = path, True
        if truncate:
            node.size = 0
        fd = self.cache.open(path)
        node.writers += 1
        return fd

    async def open(self, ino: int, flags: int) -> Handle:
        node = self.node(ino)
        if node.is_dir:
            raise IsDirError(f"is a folder: {self.inodes.path(node)}")
        write = (flags & os.O_ACCMODE) != os.O_RDONLY
        trunc = bool(flags & os.O_TRUNC)
        if not write:
            # a local version, or a drive file wholly in the clean cache, is read from its
            # file; other drive bytes range by range through the clean cache
            path = self._local_bytes(node)
            return self._handle(node, self.cache.open(path) if path else -1, False, False)
        if node.writers:
            # another writer has this version open already: share it
            assert node.cache_path is not None
            fd = self.cache.open(node.cache_path)
            node.writers += 1
            if trunc:
                self.cache.truncate(fd, 0)
                node.size = 0
            return self._handle(node, fd, True, bool(flags & os.O_APPEND))
        src = node.cache_path
        if not trunc and src is None and node.file_id is not None and node.size:
            src = await self._fetch_whole(node)
        fd = self._new_version(node, truncate=trunc, src=src)
        return self._handle(node, fd, True, bool(flags & os.O_APPEND))

    async def _fetch_whole(self, node: Node) -> str:
        """Every byte of a drive file in the clean cache (before modifying it in place)."""
        assert node.file_id is not None
        file_id, size = node.file_id, node.size
        off = 0
        while (path := self.clean.full_path(file_id, size)) is None:
            off = self.clean.gap_from(file_id, off)
            until = self.clean.next_present(file_id, off)
            end = min(size, off + (4 << 20), until if until is not None and until > off else size)
            data = await self.reads.fetch(file_id, size, off, end - off)
            if not data:
                raise RemoteNotFoundError(f"{self.inodes.path(node)} ended early on the drive")
            off += len(data)
            if off >= size and self.clean.full_path(file_id, size) is None:
                raise CacheFullError("cannot keep a copy of the drive file; free cache space")
        return path

    # -- data ------------------------------------------------------------------
    def _local_bytes(self, node: Node) -> str | None:
        """A file holding all of ``node``'s current bytes, if there is one."""
        if node.cache_path or node.file_id is None:
            return node.cache_path
        return self.clean.full_path(node.file_id, node.size)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        h = self.handles[fh]
        node = h.node
        if h.fd < 0 and (path := self._local_bytes(node)):
            h.fd = self.cache.open(path)  # became local since open: no more range lookups
        if h.fd >= 0:
            return os.pread(h.fd, size, off)
        if node.file_id is None:
            return b""
        return await self.reads.read(node.file_id, node.size, off, size)

    async def write(self, fh: int, off: int, data: bytes) -> int:
        h = self.handles[fh]
        if not h.write:
            raise UnsupportedError("handle not open for writing")
        node = h.node  # O_APPEND offsets come from the kernel (it knows the size we report)
        try:
            n = self.cache.pwrite(h.fd, data, off)
        except CacheFullError:
            # this version is incomplete: it must never be uploaded as if it were whole
            node.extra["write_error"] = "cache disk full"
            raise
        node.size = max(node.size, off + n)
        node.mtime_ns = node.ctime_ns = time.time_ns()
        return n

    async def flush(self, fh: int) -> None:
        """close(): if this is the last writer, record the version's size and mtime durably,
        so a daemon stopped before the RELEASE that follows still knows it was closed whole.
        No fsync of the data here (close() would wait for it; RELEASE does it): after a
        power cut, a file whose data did not reach the disk no longer matches the record
        (the file system orders size updates after data), so it counts as interrupted."""
        h = self.handles.get(fh)
        if h is None or not h.write or h.fd < 0 or h.version is None or h.node.writers != 1:
            return
        st = os.fstat(h.fd)
        self.versions.mark_flushed(h.version, st.st_size, st.st_mtime_ns)

    async def fsync(self, fh: int) -> None:
        h = self.handles[fh]
        if h.write and h.fd >= 0:
            await trio.to_thread.run_sync(os.fsync, h.fd)

    async def release(self, fh: int) -> None:
        h = self.handles.pop(fh)
        node = h.node
        try:
            if h.write:
                node.writers -= 1
                if node.writers == 0:
                    assert h.version is not None
                    crashpoint.reach("release_before_publish")
                    # versions of one file are queued in the order their writers closed
                    lock = self._publishing.setdefault(node.ino, trio.Lock())
                    try:
                        async with lock:
                            await self._publish(node, h.fd, h.version)
                    finally:
                        if not lock.locked() and not lock.statistics().tasks_waiting:
                            self._publishing.pop(node.ino, None)
        finally:
            if h.fd >= 0:
                os.close(h.fd)
            self.inodes.release_handle(node)

    async def _publish(self, node: Node, fd: int, path: str) -> None:
        """Last writer of version ``path`` closed: make it durable, then queue it for upload.
        (A new writer may open the next version while this one is fsynced.)"""
        await trio.to_thread.run_sync(os.fsync, fd)
        v = self.versions.get(path)
        if v is None:
            return
        if not node.linked:
            self.versions.remove(path)
            self.cache.remove(path)
            self.inodes.settle_version(path)
            return
        parent = self.inodes[node.parent]
        assert parent.file_id is not None
        previous = node.job_id
        broken = node.extra.pop("write_error", None)
        job = self.journal.add(
            source=path,
            parent_file_id=parent.file_id,
            name=node.name,
            remote_path=self.inodes.path(node),
            replaces_file_id=v.replaces_file_id,
            state="interrupted" if broken else "pending",
        )
        crashpoint.reach("publish_after_journal")
        self.versions.remove(path)
        self._save_attrs(node, version_key(path))
        if previous is not None:
            self.journal.supersede(previous)
        node.job_id = job.id
        if broken:
            log.info("not uploading %s: a write failed (%s)", job.remote_path, broken)
            return
        self.uploader.wake()

    async def setattr(
        self,
        ino: int,
        *,
        size: int | None = None,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        fh: int | None = None,
    ) -> Node:
        node = self.node(ino)
        if size is not None:
            if node.is_dir:
                raise IsDirError("cannot truncate a folder")
            if fh is not None and fh in self.handles and self.handles[fh].write:
                self.cache.truncate(self.handles[fh].fd, size)
            else:
                h = await self.open(ino, os.O_WRONLY | (os.O_TRUNC if size == 0 else 0))
                try:
                    self.cache.truncate(h.fd, size)
                finally:
                    node.size = size
                    await self.release(h.fh)
            node.size = size
            node.mtime_ns = node.ctime_ns = time.time_ns()
        if mode is not None:
            node.mode = mode
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if atime_ns is not None:
            node.atime_ns = atime_ns
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        if not node.writers and (mode, uid, gid, atime_ns, mtime_ns) != (None,) * 5:
            self._save_attrs(node)  # with writers open, the last close saves them
        return node

    # -- unlink / rename ---------------------------------------------------------
    async def unlink(self, parent_ino: int, name: str) -> None:
        parent = self.node(parent_ino)
        node = await self._child(parent, name)
        if node.is_dir:
            raise IsDirError(f"is a folder: {self._remote_path(parent, name)}")
        await self._drop_file(node)
        self.inodes.detach(node)
        if node.open_handles == 0 and node.job_id is not None and not node.writers:
            # its version is superseded now: the cache file goes (unless the upload had landed)
            job_id, node.job_id, node.cache_path = node.job_id, None, None
            self.settler.job_ended(job_id)

    async def _drop_file(self, node: Node) -> None:
        if node.job_id is not None:
            job = self.journal.get(node.job_id)
            if job is not None and job.state != "done":
                self.journal.supersede(node.job_id)  # pending, uploading, interrupted, failed
            if job is not None and job.file_id and job.state == "done":
                await self.client.trash(job.file_id)
        if node.file_id is not None:
            with contextlib.suppress(RemoteNotFoundError):
                await self.client.trash(node.file_id)

    async def rename(self, p_old: int, old: str, p_new: int, new: str, flags: int) -> None:
        src_parent, dst_parent = self.node(p_old), self.node(p_new)
        check_name(new)
        node = await self._child(src_parent, old)
        target = self.inodes.child(dst_parent, new)
        if target is None and new in await self._listing(dst_parent):
            target = self.inodes.child(dst_parent, new)
        if target is node:
            return
        if target is not None:
            if flags & 1:  # RENAME_NOREPLACE
                raise ExistsError(f"exists: {self._remote_path(dst_parent, new)}")
            if target.is_dir != node.is_dir:
                raise (IsDirError if target.is_dir else NotDirError)(f"cannot replace {new}")
            if target.is_dir and await self._listing(target, force=True):
                raise NotEmptyError(f"folder not empty: {self._remote_path(dst_parent, new)}")
        assert dst_parent.file_id is not None
        replaces: str | None = None
        if target is not None:
            if target.is_dir:
                await self.client.trash(target.file_id or "")
            elif self.remote_id(node) is None:
                # a new file over an old one (rsync's temp file): the old stays on the drive
                # until the new version has landed, then the uploader trashes it
                replaces = self.remote_id(target)
                if target.job_id is not None:
                    self.journal.supersede(target.job_id)
            else:
                await self._drop_file(target)
            self.inodes.detach(target)
        if self.remote_id(node) is not None:
            assert node.file_id is not None
            if dst_parent is not src_parent:
                await self.client.move(node.file_id, dst_parent.file_id, new_name=new)
            else:
                await self.client.rename(node.file_id, new)
        if node.dirty:
            self._retarget_local(node, dst_parent, new, replaces)
        self.inodes.move(node, dst_parent, new)

    def _retarget_local(self, node: Node, parent: Node, name: str, replaces: str | None) -> None:
        """A version not yet on the drive follows the rename. No await."""
        assert parent.file_id is not None
        remote = self._remote_path(parent, name)
        if node.cache_path and self.versions.get(node.cache_path) is not None:
            self.versions.retarget(node.cache_path, parent.file_id, name, remote, replaces)
        if node.job_id is not None:
            self.journal.retarget(
                node.job_id, parent_file_id=parent.file_id, name=name, remote_path=remote
            )
            if replaces is not None:
                self.journal.set_replaces(node.job_id, replaces)

    # -- misc ------------------------------------------------------------------
    async def statfs(self) -> tuple[int, int]:
        now = self.clock()
        if self._space is None or now - self._space[0] > 5:
            info = await self.client.space_info()
            self._space = (now, info.total_size, info.used_size)
        return self._space[1], self._space[2]

    def root(self) -> Node:
        return self.inodes[ROOT_INO]
