"""Folders made locally first: ``mkdir`` answers at once, the drive gets the folder soon after.

Owns: the ``folders`` table (mirrored in memory: one row per folder made through the
mount and not yet on the drive, under a local id, ``journal.LOCAL_PREFIX``, that stands
for its drive id in every row until it is made), and the task that makes them on the
drive in the order they were made locally (a folder's parent before it), one at a time.
When the drive answers, one transaction puts the drive id in place of the local one
everywhere (versions queued or open in the folder, folders made in it, its attributes)
and deletes its row; the mount's own view follows through ``on_made``. Uploads skip
versions whose folder is local (``Journal.due``) until then. Must not: decide what a
name clash on the drive means (``vfs.Core.make_folder`` does), or know FUSE or inodes.
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from panfs.attrs import AttrStore, drive_key
from panfs.errors import PanfsError, RemoteError, StateError
from panfs.journal import LOCAL_PREFIX, Journal
from panfs.metadata import transaction
from panfs.pending import OpenVersions

log = logging.getLogger(__name__)

Maker = Callable[[str, str], Awaitable[str]]  # (parent drive id, name) -> the folder's drive id
Deferral = Callable[[], float]  # seconds the making should still wait (files being written)


def is_local(file_id: str | None) -> bool:
    """Does this id stand for a folder made locally, not yet on the drive?"""
    return file_id is not None and file_id.startswith(LOCAL_PREFIX)


@dataclass(frozen=True)
class LocalFolder:
    seq: int
    local_id: str
    parent_id: str
    name: str
    remote_path: str
    created_at: float
    error: str | None = None
    next_retry_at: float | None = None


class Folders:
    """Sync but for ``run`` and ``made``; every write commits, or joins the transaction
    open on the connection (``metadata.transaction``)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        journal: Journal,
        open_versions: OpenVersions,
        attrs: AttrStore,
        *,
        max_backoff: float = 60.0,
    ) -> None:
        self.conn = conn  # schema: panfs.metadata
        self.journal = journal
        self.open_versions = open_versions
        self.attrs = attrs
        self.max_backoff = max_backoff
        self._rows: dict[str, LocalFolder] = {}
        self._making: str | None = None  # the local id whose create is on its way
        self._done: dict[str, trio.Event] = {}  # waiters of ``made``, by local id
        self._errors: dict[str, RemoteError] = {}  # the last failed try of a folder, this run
        self._wake = trio.Event()
        self._rng = random.Random()
        # (the folder's row, its drive id), called on the trio thread right after the commit
        self.on_made: list[Callable[[LocalFolder, str], None]] = []
        self.reload()

    def reload(self) -> None:
        rows = self.conn.execute(
            "SELECT seq, local_id, parent_id, name, remote_path, created_at, error,"
            " next_retry_at FROM folders ORDER BY seq"
        ).fetchall()
        self._rows = {r[1]: LocalFolder(*r) for r in rows}

    # -- the mount's side ---------------------------------------------------------------
    def add(self, parent_id: str, name: str, remote_path: str) -> str:
        """A folder made now: its local id. Joins the caller's transaction."""
        local_id = LOCAL_PREFIX + uuid.uuid4().hex
        now = time.time()
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO folders (local_id, parent_id, name, remote_path, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (local_id, parent_id, name, remote_path, now),
            )
        seq = cur.lastrowid
        assert seq is not None
        self._rows[local_id] = LocalFolder(seq, local_id, parent_id, name, remote_path, now)
        self._wake.set()
        return local_id

    def get(self, local_id: str) -> LocalFolder | None:
        return self._rows.get(local_id)

    def all(self) -> list[LocalFolder]:
        return sorted(self._rows.values(), key=lambda f: f.seq)

    def children(self, parent_id: str) -> dict[str, str]:
        """Folders made locally in folder ``parent_id``: name -> local id."""
        return {f.name: f.local_id for f in self.all() if f.parent_id == parent_id}

    def drop(self, local_id: str) -> bool:
        """An empty folder removed before the drive got it: it never will. False when its
        create is on its way (``made`` first, then remove it from the drive)."""
        if local_id == self._making or local_id not in self._rows:
            return False
        with transaction(self.conn):
            self.conn.execute("DELETE FROM folders WHERE local_id = ?", (local_id,))
            self.attrs.drop(drive_key(local_id))
        del self._rows[local_id]
        event = self._done.pop(local_id, None)
        if event is not None:
            event.set()
        return True

    async def made(self, local_id: str) -> None:
        """Wait until the folder is on the drive (or removed before it got there). A try
        that fails meanwhile, of it or of a folder it is in, is raised: the caller's
        operation fails as it would have on the drive (the folder is made later)."""
        while local_id in self._rows:
            head = self._head(local_id)
            event = self._done.setdefault(head, trio.Event())
            self._wake.set()  # someone waits: no deferring for files being written
            await event.wait()
            e = self._errors.get(head)
            if head in self._rows and e is not None:
                raise RemoteError(f"cannot make folder {self._rows[head].remote_path}: "
                                  f"{e.describe()}", err=e.errno)  # fmt: skip

    def _head(self, local_id: str) -> str:
        """The folder the drive must get first: ``local_id`` or the outermost local
        folder it is in."""
        f = self._rows[local_id]
        while is_local(f.parent_id) and f.parent_id in self._rows:
            f = self._rows[f.parent_id]
        return f.local_id

    # -- the making ---------------------------------------------------------------------
    def _next(self, now: float) -> LocalFolder | None:
        for f in self.all():
            if is_local(f.parent_id):
                continue  # its parent first
            if f.next_retry_at is None or f.next_retry_at <= now or f.local_id in self._done:
                return f
        return None

    async def run(
        self, make: Maker, deferred: Deferral = lambda: 0.0, *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:  # fmt: skip
        """Make the folders on the drive, for as long as the mount runs. Files being
        written go first (``deferred``), unless somebody waits for a folder (``made``)."""
        attempts: dict[str, int] = {}
        task_status.started()
        while True:
            self._wake = trio.Event()
            row = self._next(time.time())
            wait = deferred() if row is not None and not self._done else 0.0
            if row is None or wait > 0:
                with trio.move_on_after(wait if row is not None else 1.0):
                    await self._wake.wait()
                continue
            self._making = row.local_id
            try:
                file_id = await make(row.parent_id, row.name)
                self._record(row, file_id)  # (refused: the next try finds it on the drive)
            except Exception as e:  # per folder: the others and the mount go on
                if isinstance(e, RemoteError):
                    err = e
                elif isinstance(e, PanfsError | OSError):
                    err = RemoteError(str(e))
                else:
                    log.exception("making folder %s", row.remote_path)
                    err = RemoteError(f"internal error: {type(e).__name__}: {e}")
                n = attempts[row.local_id] = attempts.get(row.local_id, 0) + 1
                delay = self._rng.uniform(0.5, 1.0) * min(self.max_backoff, 0.5 * math.pow(2, n))
                log.warning("cannot make folder %s yet (retry in %.1fs): %s",
                            row.remote_path, delay, err.describe())  # fmt: skip
                self._failed(row, err, time.time() + delay)
                continue
            finally:
                self._making = None
            attempts.pop(row.local_id, None)
            self._errors.pop(row.local_id, None)
            self._resolved(row, file_id)

    def _failed(self, row: LocalFolder, e: RemoteError, retry_at: float) -> None:
        reason = e.describe()
        self._errors[row.local_id] = e
        try:
            with transaction(self.conn):
                self.conn.execute(
                    "UPDATE folders SET error = ?, next_retry_at = ? WHERE local_id = ?",
                    (reason[:300], retry_at, row.local_id),
                )
        except StateError as refused:  # (for status only: the retry goes on from memory)
            log.warning("cannot record the failed try of %s: %s", row.remote_path, refused)
        if row.local_id in self._rows:
            self._rows[row.local_id] = LocalFolder(
                row.seq, row.local_id, row.parent_id, row.name, row.remote_path,
                row.created_at, reason[:300], retry_at,
            )  # fmt: skip
        event = self._done.pop(row.local_id, None)
        if event is not None:
            event.set()  # its waiters fail now, not at the next try

    def _record(self, row: LocalFolder, file_id: str) -> None:
        """The drive made it: its id goes in place of the local one, in one commit (a
        commit the journal refuses changes nothing, in memory either)."""
        local = row.local_id
        try:
            with transaction(self.conn):
                self.conn.execute("DELETE FROM folders WHERE local_id = ?", (local,))
                self.conn.execute(
                    "UPDATE folders SET parent_id = ? WHERE parent_id = ?", (file_id, local)
                )
                self.journal.reparent(local, file_id)
                self.open_versions.reparent(local, file_id)
                self.attrs.rekey(drive_key(local), drive_key(file_id))
        except BaseException:
            self.open_versions.reload()  # the rows as the rolled-back transaction left them
            raise

    def _resolved(self, row: LocalFolder, file_id: str) -> None:
        """What follows a recorded folder in memory (no await)."""
        local = row.local_id
        del self._rows[local]
        for f in list(self._rows.values()):
            if f.parent_id == local:
                self._rows[f.local_id] = LocalFolder(
                    f.seq, f.local_id, file_id, f.name, f.remote_path, f.created_at,
                    f.error, f.next_retry_at,
                )  # fmt: skip
        log.debug("folder %s made on the drive: %s", row.remote_path, file_id)
        for hook in self.on_made:
            try:
                hook(row, file_id)
            except Exception:  # the folder is made and recorded: the mount goes on
                log.exception("after folder %s was made", row.remote_path)
        event = self._done.pop(local, None)
        if event is not None:
            event.set()
