"""The filesystem core: every filesystem operation in drive terms, behind one façade.

Owns: what ``docs/semantics.md`` promises, by composing the namespace (names,
listings, lookups, readdir cookies: ``namespace.py``), write versions (their whole
life: ``versions.py``), open handles (``handles.py``), start-up repair
(``recovery.py``) and the read path; and the operations that touch several of
them: unlink and rename (the name goes, or moves, on the drive and in the
journal together), folders, symbolic links, attributes. Must not: import
pyfuse3 (``fs.py`` translates), speak HTTP (the client does), or build SQL.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable

import trio

from panfs.attrs import AttrStore, file_time_ns
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.errors import (
    CacheFullError,
    ExistsError,
    IsDirError,
    LocalError,
    NotDirError,
    NotEmptyError,
    RemoteError,
    RemoteExistsError,
    RemoteNotFoundError,
    UnsupportedError,
)
from panfs.handles import Handle, Handles
from panfs.inodes import InodeTable, Node
from panfs.journal import RECOVERED_ID, RECOVERED_NAME, Journal
from panfs.namespace import Namespace, check_name
from panfs.pending import OpenVersions
from panfs.reader import RangeReader
from panfs.readpath import ReadPath
from panfs.recovery import Recovery
from panfs.remote.client import OpenApiClient
from panfs.uploader import Uploader
from panfs.versions import Versions

log = logging.getLogger(__name__)

LINK_SUFFIX = ".panfslink"


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
        upload_delay: float = 0.0,
        link_suffix: str = LINK_SUFFIX,
    ) -> None:
        self.client = client
        self.journal = journal
        self.uploader = uploader
        self.cache = cache
        self.clean = clean
        self.attrs = attrs
        self.uid, self.gid = uid, gid
        self.inodes = InodeTable(uid, gid, time.time_ns())
        self.handles = Handles()
        self.reads = ReadPath(RangeReader(client), clean)  # daemon runs its read-ahead
        self.ns = Namespace(
            client=client, journal=journal, inodes=self.inodes, attrs=attrs, list_ttl=list_ttl,
            uid=uid, gid=gid, link_suffix=link_suffix, clock=clock,
        )  # fmt: skip
        self.versions = Versions(
            journal=journal, open_versions=versions, cache=cache, clean=clean, attrs=attrs,
            inodes=self.inodes, handles=self.handles, uploader=uploader,
            fetch_whole=self._fetch_whole, delay=upload_delay,
        )  # fmt: skip
        self.versions.on_aside = self.ns.recovery_changed
        self.recovery = Recovery(
            journal=journal, versions=versions, clean=clean, attrs=attrs, cache=cache,
            job_ended=self.versions.job_ended,
        )  # fmt: skip
        self.link_suffix = link_suffix
        self._space: tuple[float, int, int] | None = None

    # -- start-up ----------------------------------------------------------------
    def recover(self) -> list[int]:
        """After any stop: cut-off writers become ``interrupted`` jobs, uploaded versions
        become clean cache, stray cache files go (``recovery.Recovery.at_start``)."""
        return self.recovery.at_start()

    # -- namespace -------------------------------------------------------------
    def node(self, ino: int) -> Node:
        return self.ns.node(ino)

    def root(self) -> Node:
        return self.ns.root()

    def remember(self, node: Node) -> Node:
        return self.ns.remember(node)

    async def lookup(self, parent_ino: int, name: str) -> Node:
        return await self.ns.lookup(parent_ino, name)

    def forget(self, pairs: list[tuple[int, int]]) -> None:
        self.ns.forget(pairs)

    async def readdir(self, ino: int, after: int = 0) -> list[Node]:
        """Entries past readdir cookie ``after`` (``Node.cookie``); the caller counts a
        lookup (``remember``) for each entry the kernel accepted."""
        return await self.ns.entries(ino, after)

    def nlink(self, node: Node) -> int:
        if not node.linked:
            return 0
        return 2 + self.inodes.subfolders(node) if node.is_dir else 1

    # -- folders ---------------------------------------------------------------
    async def mkdir(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Node:
        parent = self.node(parent_ino)
        _read_only(parent)
        check_name(name)
        if name in await self.ns.listing(parent):
            raise ExistsError(f"exists: {self.ns.remote_path(parent, name)}")
        assert parent.file_id is not None
        # an upload's session made under the name (its file renamed away since) may complete
        # there any moment, and its post-steps move it on: the folder shares the name
        shared = await self._clear_transit(parent.file_id, name)
        shared = shared or self.journal.session_at(parent.file_id, name)
        how = "ignore" if shared else "refuse"
        res = await self.client.create_folder(parent.file_id, name, check_name_mode=how)
        if res.exist and self.journal.is_dead(res.file_id):
            # a file of ours whose name went, not yet trashed: finish that first
            self.journal.doom([res.file_id], "a folder takes its name")
            await self.client.trash(res.file_id)
            self.journal.trashed(res.file_id)
            res = await self.client.create_folder(parent.file_id, name, check_name_mode="refuse")
        if res.exist and (
            res.file_id in self.journal.hidden_file_ids() or await self._held_by_dead(parent, name)
        ):
            # only files of ours listings hide hold the name (an upload renamed away while it
            # ran, its file made there; the one the drive named may have moved on before a
            # listing would show it): the folder shares it until its post-steps move that file
            # on, as a rename does
            res = await self.client.create_folder(parent.file_id, name, check_name_mode="ignore")
        if res.exist:
            raise ExistsError(f"exists on the drive: {self.ns.remote_path(parent, name)}")
        now = time.time_ns()
        node = self.inodes.add(
            parent, name, True, file_id=res.file_id, mode=mode, uid=uid, gid=gid,
            mtime_ns=now, ctime_ns=now, atime_ns=now,
        )  # fmt: skip
        node.children, node.listed_at = {}, self.ns.clock()
        self.ns.touch_dir(parent)
        self.versions.save_attrs(node)
        return self.remember(node)

    async def _move(
        self, file_id: str, src_parent: Node, dst_parent: Node, name: str, mode: str
    ) -> None:
        assert dst_parent.file_id is not None
        if dst_parent is not src_parent:
            await self.client.move(file_id, dst_parent.file_id, new_name=name, check_name_mode=mode)
        else:
            await self.client.rename(file_id, name, check_name_mode=mode)

    async def _held_by_dead(self, folder: Node, name: str, moving: str | None = None) -> bool:
        """Is ``name`` in ``folder`` held on the drive (but by ``moving``, the file a rename
        moves there) only by files of ours that listings hide (doomed, a superseded
        version's, one on its way to another name)?"""
        assert folder.file_id is not None
        items = await self.client.list_folder(folder.file_id)
        clash = {i.file_id for i in items if i.name == name and i.file_id != moving}
        return bool(clash) and clash <= self.journal.hidden_file_ids()

    async def _clear_transit(self, parent_id: str, name: str) -> bool:
        """A landed upload's file may still stand under the name it was created with, on
        its way to the name it was renamed to: let its post-steps move it first (the
        listing hides it, the drive would still refuse the name). True when one is the
        renamed file's own newer version: its session was made under the name the file
        goes back to, and may complete there any moment (the name is shared until it
        lands and retires the file renamed now)."""
        me = trio.lowlevel.current_task()
        ours = False
        for job_id in self.journal.in_transit(parent_id, name):
            lock = self.uploader.landing(job_id)
            if lock.statistics().owner is me:
                ours = True  # the rename in progress holds it
                continue
            async with lock:
                pass
        return ours

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self.node(parent_ino)
        node = await self.ns.child(parent, name)
        if not node.is_dir:
            raise NotDirError(f"not a folder: {self.ns.remote_path(parent, name)}")
        _read_only(node)
        if await self.ns.listing(node, force=True):
            raise NotEmptyError(f"folder not empty: {self.ns.remote_path(parent, name)}")
        assert node.file_id is not None
        await self.client.trash(node.file_id)
        self.inodes.detach(node)
        self.ns.touch_dir(parent)

    # -- files: open / create --------------------------------------------------
    async def create(
        self, parent_ino: int, name: str, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[Handle, Node]:
        parent = self.node(parent_ino)
        _read_only(parent)
        existing = await self.ns.find(parent, name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise ExistsError(f"exists: {self.ns.remote_path(parent, name)}")
            if existing.is_dir:
                raise IsDirError(f"is a folder: {self.ns.remote_path(parent, name)}")
            h = await self.open(existing.ino, flags | os.O_TRUNC | os.O_WRONLY)
            return h, self.remember(existing)
        node = self._new_node(parent, name, mode, uid, gid)
        h = await self.versions.new_file_version(node)
        h.append = bool(flags & os.O_APPEND)
        return h, self.remember(node)

    def _new_node(self, parent: Node, name: str, mode: int, uid: int, gid: int) -> Node:
        now = file_time_ns()  # the kernel's clock: see attrs.file_time_ns
        node = self.inodes.add(
            parent, name, False, mode=mode, uid=uid, gid=gid,
            mtime_ns=now, ctime_ns=now, atime_ns=now,
        )  # fmt: skip
        self.ns.touch_dir(parent)
        return node

    async def mknod(self, parent_ino: int, name: str, mode: int, uid: int, gid: int) -> Node:
        """Only regular files: like ``create``, closed at once."""
        if not stat.S_ISREG(mode):
            raise UnsupportedError("the drive holds no devices, FIFOs or sockets")
        h, node = await self.create(
            parent_ino, name, mode & 0o7777, os.O_WRONLY | os.O_EXCL, uid, gid
        )
        await self.release(h.fh)
        return node

    async def open(self, ino: int, flags: int) -> Handle:
        node = self.node(ino)
        if node.is_dir:
            raise IsDirError(f"is a folder: {self.inodes.path(node)}")
        write = (flags & os.O_ACCMODE) != os.O_RDONLY
        if write:
            _read_only(self.inodes[node.parent])
        if not write:
            # a local version, or a drive file wholly in the clean cache, is read from its
            # file; other drive bytes range by range through the clean cache
            path = self._local_bytes(node)
            return self.handles.add(
                node, self.cache.open(path) if path else -1, write=False, append=False
            )
        h = self.handles.add(node, -1, write=True, append=bool(flags & os.O_APPEND))
        if flags & os.O_TRUNC and node.size:
            # O_TRUNC of non-empty bytes changes the file: an empty version at once
            try:
                await self.versions.ensure(h, truncate=True)
            except BaseException:
                self.handles.pop(h.fh)
                self.inodes.release_handle(node)
                raise
        return h

    def keep_cache(self, h: Handle) -> bool:
        """May the kernel keep its cached pages of this file? Not when its bytes changed
        behind the kernel's back (another drive file adopted from a listing)."""
        node = h.node
        keep = not h.write and node.kernel_gen == node.data_gen
        node.kernel_gen = node.data_gen
        return keep

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

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
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
        self.uploader.foreground()
        if h.version is None:
            await self.versions.ensure(h)
        return self.versions.write(h, off, data)

    async def flush(self, fh: int) -> None:
        h = self.handles.get(fh)
        if h is not None:
            self.versions.flush(h)

    async def fsync(self, fh: int) -> None:
        await self.versions.fsync(self.handles[fh])

    async def release(self, fh: int, *, grouped: bool = False) -> None:
        """``grouped``: the kernel's RELEASE, which nobody waits for (see Versions.release)."""
        h = self.handles.pop(fh)
        node = h.node
        try:
            if h.write:
                await self.versions.release(h, grouped=grouped)
        finally:
            Handles.close_fd(h)
            self.inodes.release_handle(node)
            if not node.linked:
                self.versions.forgotten(node)

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
        _read_only(node if node.file_id == RECOVERED_ID else self.inodes[node.parent])
        now = time.time_ns()
        if size is not None:
            if node.is_dir:
                raise IsDirError("cannot truncate a folder")
            h = self.handles.get(fh) if fh is not None else None
            if h is not None and h.write:
                await self.versions.truncate(h, size)
            elif size != node.size:
                h = await self.open(ino, os.O_WRONLY)
                try:
                    await self.versions.truncate(h, size)
                finally:
                    await self.release(h.fh)
            node.ctime_ns = max(now, node.ctime_ns)
        if mode is not None:
            node.mode = mode
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if (mode, uid, gid) != (None, None, None):
            node.ctime_ns = max(now, node.ctime_ns)
        if atime_ns is not None:
            node.atime_ns = atime_ns
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
            node.ctime_ns = max(now, node.ctime_ns)
        if not node.writers and (mode, uid, gid, atime_ns, mtime_ns) != (None,) * 5:
            self.versions.save_attrs(node)  # with writers open, the last close saves them
        return node

    # -- symbolic links ------------------------------------------------------------
    async def symlink(self, parent_ino: int, name: str, target: bytes, uid: int, gid: int) -> Node:
        """Stored on the drive as a small file named ``name`` + the link suffix."""
        parent = self.node(parent_ino)
        _read_only(parent)
        if await self.ns.find(parent, name) is not None:
            raise ExistsError(f"exists: {self.ns.remote_path(parent, name)}")
        check_name(name + self.link_suffix)
        node = self._new_node(parent, name, 0o777, uid, gid)
        node.link_suffix = self.link_suffix
        node.extra["link"] = os.fsdecode(target)
        h = await self.versions.new_file_version(node, target)
        await self.release(h.fh)
        return self.remember(node)

    async def readlink(self, ino: int) -> bytes:
        node = self.node(ino)
        if not node.is_link:
            raise UnsupportedError("not a symbolic link", err=errno.EINVAL)
        if (target := node.extra.get("link")) is not None:
            return os.fsencode(target)
        path = self._local_bytes(node)
        if path is not None:
            data = await trio.Path(path).read_bytes()
        elif node.file_id is not None and node.size:
            data = bytes(await self.reads.read(node.file_id, node.size, 0, node.size))
        else:
            data = b""
        node.extra["link"] = os.fsdecode(data)
        return data

    # -- unlink / rename ---------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _landing_of(self, *names: tuple[Node, Node]) -> AsyncIterator[None]:
        """Hold what a change of the names (folder, node) must not interleave with: first
        the files' version locks, their closed versions queued (``Versions.settled``: none
        is queued under a name mid-change), then the landing locks of every upload of the
        names (an upload's complete and post-steps, the move to the final name and the
        trash of what it replaces, never interleave with the change). Each kind is taken
        in one order (inode, job id), so two renames never wait for each other."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.versions.settled(*(n for _, n in names)))
            ids: set[int] = set()
            for parent, node in names:
                assert parent.file_id is not None
                ids |= {j.id for j in self.journal.name_jobs(parent.file_id, node.drive_name)}
            for job_id in sorted(ids):
                await stack.enter_async_context(self.uploader.landing(job_id))
            yield

    async def unlink(self, parent_ino: int, name: str) -> None:
        parent = self.node(parent_ino)
        node = await self.ns.child(parent, name)
        if node.is_dir:
            raise IsDirError(f"is a folder: {self.ns.remote_path(parent, name)}")
        async with self._landing_of((parent, node)):
            await self._drop(parent, node)
            self.inodes.detach(node)
        if parent.file_id == RECOVERED_ID:
            self.ns.recovery_changed()  # the folder goes with its last file
        self.ns.touch_dir(parent)
        node.ctime_ns = max(time.time_ns(), node.ctime_ns)
        if node.open_handles == 0:
            self.versions.forgotten(node)

    async def _drop(self, parent: Node, node: Node, also: list[str] | None = None) -> None:
        """The name goes for good: every version of it is abandoned and every drive file it
        stood for is doomed in one step, then trashed (the reaper retries what fails), so
        no listing, expiry or remount brings an older version back."""
        assert parent.file_id is not None
        jobs = self.journal.name_jobs(parent.file_id, node.drive_name)
        doom = [node.file_id, *(also or [])]
        v = None
        if node.version_open and node.cache_path:
            # still open (or its close not yet queued): its bytes go with the last handle,
            # never uploaded; the drive file it was to replace goes now
            v = self.versions.open_versions.get(node.cache_path)
            if v is not None:
                doom.append(v.replaces_file_id)
        doomed = self.journal.abandon([j.id for j in jobs], doom)
        if v is not None:
            self.versions.open_versions.remove(v.cache_path)
        node.job_id = None
        for job in jobs:
            if job.id not in self.uploader.running:
                self.versions.job_ended(job.id)
        await self._trash_now(list(dict.fromkeys(doomed)))

    async def _trash_now(self, file_ids: list[str]) -> None:
        for file_id in file_ids:
            try:
                await self.client.trash(file_id)
            except RemoteError as e:
                log.warning("trash later (%s): %s", file_id, e.describe())
                self.uploader.wake()
                continue
            self.journal.trashed(file_id)

    async def rename(self, p_old: int, old: str, p_new: int, new: str, flags: int) -> None:
        src_parent, dst_parent = self.node(p_old), self.node(p_new)
        check_name(new)
        node = await self.ns.child(src_parent, old)
        target = await self.ns.find(dst_parent, new)
        target_id = target.file_id if target is not None else None
        if RECOVERED_ID in (src_parent.file_id, dst_parent.file_id, node.file_id, target_id):
            # mv copies it out (and removes it) instead
            raise LocalError(f"{RECOVERED_NAME}: files are copied out, not moved",
                             err=errno.EXDEV)  # fmt: skip
        if target is node:
            return
        if target is not None:
            if flags & 1:  # RENAME_NOREPLACE
                raise ExistsError(f"exists: {self.ns.remote_path(dst_parent, new)}")
            if target.is_dir != node.is_dir:
                raise (IsDirError if target.is_dir else NotDirError)(f"cannot replace {new}")
            if target.is_dir and await self.ns.listing(target, force=True):
                raise NotEmptyError(f"folder not empty: {self.ns.remote_path(dst_parent, new)}")
        check_name(new + node.link_suffix)
        names = [(src_parent, node)]
        if target is not None and not target.is_dir:
            names.append((dst_parent, target))
        async with self._landing_of(*names):
            await self._rename_locked(src_parent, node, dst_parent, new, target)
        self.ns.touch_dir(src_parent)
        self.ns.touch_dir(dst_parent)
        node.ctime_ns = max(time.time_ns(), node.ctime_ns)

    async def _rename_locked(
        self, src_parent: Node, node: Node, dst_parent: Node, new: str, target: Node | None
    ) -> None:
        assert dst_parent.file_id is not None
        assert src_parent.file_id is not None
        new_drive = new + node.link_suffix
        replaces: str | None = None
        if target is not None:
            freed: list[str] = []
            if not target.is_dir:
                # a failed or cut-off version of the name (on no drive) is kept aside; the
                # drive file it was to retire is this rename's to retire
                before = self.journal.set_aside_count
                freed = self.journal.set_aside(dst_parent.file_id, target.drive_name)
                if self.journal.set_aside_count != before:
                    self.ns.recovery_changed()
            if target.is_dir:
                await self.client.trash(target.file_id or "")
            elif self.versions.remote_id(node) is None:
                # a new file over an old one (rsync's temp file): the old stays on the drive
                # until the new version has landed, then the uploader trashes it
                replaces = self.versions.remote_id(target)
                if target.version_open and target.cache_path:
                    v = self.versions.open_versions.get(target.cache_path)
                    replaces = replaces or (v.replaces_file_id if v else None)
                replaces = replaces or (freed[0] if freed else None)
                self.journal.doom([f for f in freed if f != replaces], "replaced by a rename")
                for job in self.journal.name_jobs(dst_parent.file_id, target.drive_name):
                    if self.journal.supersede(job.id) and job.id not in self.uploader.running:
                        self.versions.job_ended(job.id)
                if target.version_open and target.cache_path:
                    self.versions.open_versions.remove(target.cache_path)
                target.job_id = None
            else:
                await self._drop(dst_parent, target, freed)
            self.inodes.detach(target)
            if target.open_handles == 0:
                self.versions.forgotten(target)
        shared = await self._clear_transit(dst_parent.file_id, new_drive)
        # a session made under the new name may complete there any moment (the file's own
        # newer version, or one just abandoned, whose complete then trashes it): the name
        # is shared until then, never refused
        shared = shared or self.journal.session_at(dst_parent.file_id, new_drive)
        mode = "ignore" if shared else "refuse"
        file_id = self.versions.remote_id(node)
        log.debug("rename %s -> %s: drive file %s, jobs %s", self.inodes.path(node), new_drive,
                  file_id, [j.id for j in self.journal.name_jobs(src_parent.file_id,
                                                                  node.drive_name)])  # fmt: skip
        if file_id is not None and (dst_parent is not src_parent or new_drive != node.drive_name):
            try:
                await self._move(file_id, src_parent, dst_parent, new_drive, mode)
            except RemoteExistsError:
                if mode == "ignore" or not await self._held_by_dead(dst_parent, new_drive, file_id):
                    raise
                # a file of ours no name shows any more (doomed: a complete that landed it
                # late, trashed again soon) holds the name on the drive: share it
                await self._move(file_id, src_parent, dst_parent, new_drive, "ignore")
        # the journal follows, in one step with the kernel's view (no await from here)
        jobs = self.journal.name_jobs(src_parent.file_id, node.drive_name)
        remote = self.ns.remote_path(dst_parent, new_drive)
        for job in jobs:
            self.journal.retarget(
                job.id, parent_file_id=dst_parent.file_id, name=new_drive, remote_path=remote
            )
            if job.landed_at is not None and job.file_id and job.file_id == file_id:
                # we moved its file ourselves: its post-steps find it in place
                self.journal.note_file(job.id, job.file_id, dst_parent.file_id, new_drive)
            if replaces is not None and job.landed_at is None:
                self.journal.set_replaces(job.id, replaces)
        if node.version_open and node.cache_path:
            self.versions.open_versions.retarget(
                node.cache_path, dst_parent.file_id, new_drive, remote, replaces
            )
        self.inodes.move(node, dst_parent, new)

    def journal_changed(self) -> None:
        """Another process changed the journal (``panfs forget``, ``panfs retry``): a file
        whose version was dropped there leaves the mount like an unlinked one. No await."""
        for path, node in self.inodes.unsettled():
            if node.job_id is None or node.cache_path != path or node.writers:
                continue
            job = self.journal.get(node.job_id)
            if job is not None and job.state != "superseded":
                continue
            node.job_id, node.cache_path, node.dirty = None, None, False
            node.version_open = False
            if node.linked and node.file_id is None:
                parent = self.inodes.get(node.parent)
                self.inodes.detach(node)
                if parent is not None:
                    self.ns.touch_dir(parent)
            if job is not None:
                self.versions.job_ended(job.id)

    # -- misc ------------------------------------------------------------------
    async def statfs(self) -> tuple[int, int]:
        now = self.ns.clock()
        if self._space is None or now - self._space[0] > 5:
            info = await self.client.space_info()
            self._space = (now, info.total_size, info.used_size)
        return self._space[1], self._space[2]


def _read_only(folder: Node) -> None:
    """The recovery folder (versions set aside) is read-only: copy out, or remove."""
    if folder.file_id == RECOVERED_ID:
        raise LocalError(
            f"{RECOVERED_NAME} is read-only: copy its files out, or remove them", err=errno.EPERM
        )
