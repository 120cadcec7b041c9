"""The upload journal: one row per version of a file to put on the drive, and its parts.

Owns: the durable upload state machine, written at the moments the durability
rules require: the session (file_id, upload_id, part plan) before the first PUT,
each part after the server acknowledged it, "done" only after the hashes agreed.
Must not: talk to the drive or read file contents (the upload session does).
Sync, on the trio thread; every method commits before it returns.

States: ``pending`` → ``uploading`` → ``done``; ``failed`` (permanent reason in
``error``); ``superseded`` (a newer version exists: never completes);
``interrupted`` (its writer was cut off: never uploaded until the user acts).
``landed_at`` marks an ``uploading`` job whose complete was answered and whose
hashes agreed: from then on it IS the name on the drive (its post-steps, the
move to the final name and the trash of what it replaces, may remain), so a
newer version replaces it instead of superseding it.

One name, one landing: adding a job supersedes, in the same transaction, every
older unlanded job of the same (folder, name); whatever drive file the superseded
job was to retire is inherited by the new job or doomed. Doomed drive files
(``doomed``) and superseded jobs that hold a drive file are what the reaper
trashes; listings hide both.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import xxhash

from panfs.metadata import transaction

JobState = Literal["pending", "uploading", "done", "failed", "superseded", "interrupted"]
ACTIVE: tuple[JobState, ...] = ("pending", "uploading")

_COLS = (
    "id, source, size, mtime_ns, inode, fingerprint, parent_file_id, name, remote_path,"
    " replaces_file_id, state, file_id, upload_id, created_parent, created_name, part_size,"
    " sent_bytes, error, next_retry_at, created_at, updated_at, landed_at, rapid_at,"
    " completing_at"
)
# the recovery folder: versions that failed or were cut off, set aside when a newer version
# took their name; a folder of the mount only (never on the drive), listed from the journal
RECOVERED_ID = "panfs:recovered"
RECOVERED_NAME = ".panfs-recovered"
# seconds a request whose answer was lost (a crash, a dropped connection) may still take to
# be applied by the drive: a create or complete sent before may land that much later
LATE = 30.0
# superseded versions that still hold work on the drive: a file they made (to trash), or a
# create whose answer was lost (its file, if it was made, is looked for and trashed)
HOLDING = "state = 'superseded' AND (file_id IS NOT NULL OR rapid_at IS NOT NULL)"
# states whose job still holds a version that may yet land (and so may be superseded)
UNLANDED: tuple[JobState, ...] = ("pending", "uploading", "interrupted", "failed")


# (size, mtime_ns, inode, fingerprint) of a version's cache file: changed bytes, a new session
Identity = tuple[int, int, int, str]


@dataclass(frozen=True)
class Job:
    id: int
    source: str
    size: int
    mtime_ns: int
    inode: int
    fingerprint: str
    parent_file_id: str
    name: str
    remote_path: str
    replaces_file_id: str | None
    state: JobState
    file_id: str | None
    upload_id: str | None
    created_parent: str | None
    created_name: str | None
    part_size: int | None
    sent_bytes: int
    error: str | None
    next_retry_at: float | None
    created_at: float
    updated_at: float
    landed_at: float | None = None
    rapid_at: float | None = None
    completing_at: float | None = None

    @property
    def identity(self) -> Identity:
        return (self.size, self.mtime_ns, self.inode, self.fingerprint)


@dataclass(frozen=True)
class PartRecord:
    part_number: int
    offset: int
    size: int
    etag: str
    xxh3: str
    acked_at: float


def identity(path: str) -> Identity:
    """(size, mtime_ns, inode, fingerprint): the fingerprint samples head, middle and tail."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return identity_fd(fd)
    finally:
        os.close(fd)


def identity_fd(fd: int) -> Identity:
    """``identity`` of an open file (a worker thread takes it with the close's fsync)."""
    st = os.fstat(fd)
    h = xxhash.xxh3_64()
    h.update(st.st_size.to_bytes(8, "little"))
    for off in sorted({0, max(0, st.st_size // 2 - 32768), max(0, st.st_size - 65536)}):
        h.update(os.pread(fd, 65536, off))
    return st.st_size, st.st_mtime_ns, st.st_ino, h.hexdigest()


# seconds a drive file that listings no longer hide is remembered (longer than any listing
# request takes: one sent before it was unhidden must still hide it)
UNHIDDEN_KEEP = 300.0


class Journal:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.set_aside_count = 0  # versions moved to the recovery folder by this object
        # drive files listings stopped hiding (moved to where the journal now says they
        # stand, or trashed), with when (monotonic): a listing the drive made before then
        # still shows them where they were (``unhidden_since``)
        self._unhidden: dict[str, float] = {}

    # -- reading ---------------------------------------------------------------------
    def get(self, job_id: int) -> Job | None:
        row = self.conn.execute(f"SELECT {_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job(*row) if row else None

    def jobs(self, states: Iterable[JobState] | None = None) -> list[Job]:
        if states is None:
            rows = self.conn.execute(f"SELECT {_COLS} FROM jobs ORDER BY id").fetchall()
        else:
            wanted = list(states)
            marks = ",".join("?" * len(wanted))
            rows = self.conn.execute(
                f"SELECT {_COLS} FROM jobs WHERE state IN ({marks}) ORDER BY id", wanted
            ).fetchall()
        return [Job(*r) for r in rows]

    def by_source(self, source: str) -> Job | None:
        """The newest job uploading ``source`` (a mount's cache file has at most one)."""
        row = self.conn.execute(
            f"SELECT {_COLS} FROM jobs WHERE source = ? ORDER BY id DESC LIMIT 1", (source,)
        ).fetchone()
        return Job(*row) if row else None

    def due(self, now: float, skip: Iterable[int], limit: int) -> list[int]:
        """Up to ``limit`` jobs to upload now (pending or uploading, retry time come),
        oldest first, leaving out ``skip`` (those already running)."""
        skip = list(skip)
        not_in = f" AND id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        rows = self.conn.execute(
            "SELECT id FROM jobs WHERE state IN ('pending', 'uploading')"
            f" AND (next_retry_at IS NULL OR next_retry_at <= ?){not_in} ORDER BY id LIMIT ?",
            (now, *skip, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def busy(self) -> bool:
        """Anything left to do on the drive: versions to upload (or finish landing), drive
        files to trash (doomed, held by superseded versions, or made by a superseded
        version's create whose answer was lost)."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE state IN ('pending', 'uploading')"
            f"  OR ({HOLDING}))"
            " OR EXISTS (SELECT 1 FROM doomed)"
        ).fetchone()
        return bool(row[0])

    def clear_delays(self) -> None:
        """Pending versions waiting out the write-back delay may go now."""
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET next_retry_at = NULL WHERE state = 'pending' AND error IS NULL"
            )

    def erroring(self) -> list[Job]:
        """Versions being retried: pending or uploading, with the last try's error."""
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM jobs WHERE error IS NOT NULL"
            " AND state IN ('pending', 'uploading') ORDER BY id"
        ).fetchall()
        return [Job(*r) for r in rows]

    def acked_since(self, since: float) -> float | None:
        """When the drive last acknowledged a part, if it did after ``since``."""
        row = self.conn.execute(
            "SELECT max(acked_at) FROM parts WHERE acked_at > ?", (since,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def parts(self, job_id: int) -> list[PartRecord]:
        rows = self.conn.execute(
            "SELECT part_number, offset, size, etag, xxh3, acked_at FROM parts"
            " WHERE job_id = ? ORDER BY part_number",
            (job_id,),
        ).fetchall()
        return [PartRecord(*r) for r in rows]

    # -- the contract the mount and `panfs upload` use -----------------------------------
    def add(
        self,
        *,
        source: str,
        parent_file_id: str,
        name: str,
        remote_path: str,
        replaces_file_id: str | None = None,
        state: JobState = "pending",
        not_before: float | None = None,
        supersede: bool = True,
        set_aside: bool = False,
        ident: Identity | None = None,
        error: str | None = None,
    ) -> tuple[Job, list[int]]:
        """Queue a version of (folder, name). In the same transaction every older unlanded
        job of that name is superseded (one name, one landing); the drive file such a job
        was to retire becomes this job's to retire, or is doomed when this job retires
        another. Returns the job and the ids it superseded. ``not_before``: the write-back
        delay (the scheduler leaves the job alone until then). ``set_aside``: older failed
        or interrupted versions (their bytes are on no drive) go to the recovery folder
        instead of being superseded. ``ident``: the source's ``identity``, when the caller
        took it already (off the trio thread). ``error``: why it is queued interrupted."""
        size, mtime_ns, inode, fp = ident or identity(source)
        now = time.time()
        with transaction(self.conn):  # or joins the caller's (one commit for a whole close)
            # every unlanded version of the name, in one query: failed or interrupted ones
            # go aside (when asked), the others are superseded
            rows = self.conn.execute(
                "SELECT id, name, replaces_file_id, state FROM jobs WHERE parent_file_id = ?"
                " AND name = ? AND state IN ('pending', 'uploading', 'interrupted', 'failed')"
                " AND landed_at IS NULL ORDER BY id",
                (parent_file_id, name),
            ).fetchall()
            goes_aside = [set_aside and r[3] in ("interrupted", "failed") for r in rows]
            aside = [(r[0], r[1], r[2]) for r, a in zip(rows, goes_aside, strict=True) if a]
            older = [(r[0], r[2]) for r, a in zip(rows, goes_aside, strict=True) if not a]
            # what set-aside versions were to retire becomes this one's (or is doomed)
            freed = self._put_aside(aside, now)
            if not supersede:
                older = []
            replaces = replaces_file_id
            for r in [*freed, *(r for _, r in older)]:
                if r is None or r == replaces:
                    continue
                if replaces is None:
                    replaces = r
                else:
                    self._doom(r, f"replaced by a newer version of {remote_path}", now)
            cur = self.conn.execute(
                "INSERT INTO jobs (source, size, mtime_ns, inode, fingerprint, parent_file_id,"
                " name, remote_path, replaces_file_id, state, next_retry_at, error, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source,
                    size,
                    mtime_ns,
                    inode,
                    fp,
                    parent_file_id,
                    name,
                    remote_path,
                    replaces,
                    state,
                    not_before,
                    error,
                    now,
                    now,
                ),
            )
            ids = [i for i, _ in older]
            if ids:
                marks = ",".join("?" * len(ids))
                self.conn.execute(
                    f"UPDATE jobs SET state = 'superseded', updated_at = ? WHERE id IN ({marks})",
                    (now, *ids),
                )
        # the row as inserted (the other columns start empty): no query to read it back
        job = Job(
            id=int(cur.lastrowid or 0), source=source, size=size, mtime_ns=mtime_ns,
            inode=inode, fingerprint=fp, parent_file_id=parent_file_id, name=name,
            remote_path=remote_path, replaces_file_id=replaces, state=state, file_id=None,
            upload_id=None, created_parent=None, created_name=None, part_size=None,
            sent_bytes=0, error=error, next_retry_at=not_before, created_at=now, updated_at=now,
        )  # fmt: skip
        return job, ids

    def set_aside(self, parent_file_id: str, name: str) -> list[str]:
        """A newer version takes the name (rename-over): failed or interrupted versions of it
        go to the recovery folder, where they can be read, copied out and removed. Returns
        the drive files they were to retire: the caller's to retire now."""
        with self.conn:
            return self._set_aside(parent_file_id, name, time.time())

    def _set_aside(self, parent_file_id: str, name: str, now: float) -> list[str]:
        rows = self.conn.execute(
            "SELECT id, name, replaces_file_id FROM jobs WHERE parent_file_id = ? AND name = ?"
            " AND state IN ('interrupted', 'failed') AND landed_at IS NULL",
            (parent_file_id, name),
        ).fetchall()
        return self._put_aside(rows, now)

    def _put_aside(self, rows: list[tuple[int, str, str | None]], now: float) -> list[str]:
        """Move these (id, name, replaces) versions to the recovery folder; what they were
        to retire is returned."""
        self.set_aside_count += len(rows)
        for job_id, old, _ in rows:
            aside = _aside_name(job_id, old)
            self.conn.execute(
                "UPDATE jobs SET parent_file_id = ?, name = ?, remote_path = ?,"
                " replaces_file_id = NULL, updated_at = ? WHERE id = ?",
                (RECOVERED_ID, aside, f"/{RECOVERED_NAME}/{aside}", now, job_id),
            )
        return list(dict.fromkeys(r[2] for r in rows if r[2]))

    def _set(self, job_id: int, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        # superseded is final: no later write of the old session may revive the job
        guard = " AND state != 'superseded'" if "state" in fields else ""
        with self.conn:
            self.conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?{guard}",
                (*fields.values(), time.time(), job_id),
            )

    def supersede(self, job_id: int) -> bool:
        """A newer version of the same name took over (a landed job is replaced, never
        superseded). True when the job was superseded by this call."""
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET state = 'superseded', updated_at = ?"
                " WHERE id = ? AND state IN ('pending', 'uploading', 'interrupted', 'failed')"
                " AND landed_at IS NULL",
                (time.time(), job_id),
            )
        return cur.rowcount == 1

    def abandon(self, job_ids: Iterable[int], doom: Iterable[str | None] = ()) -> list[str]:
        """A name goes (unlink, rename-over by a file already on the drive): its jobs never
        land, and every drive file they stood for or were to retire is doomed, with
        ``doom``, in one transaction. A landed job is abandoned too (its post-steps stop)
        and its own file doomed, as is a done one's, and one a rapid create made (it
        stands under the name already, before it lands). Returns the doomed file ids (to trash
        now; the reaper retries)."""
        now = time.time()
        ids = [f for f in doom if f]
        jobs = [j for j in (self.get(i) for i in job_ids) if j is not None]
        with self.conn:
            for job in jobs:
                if job.state == "superseded":
                    continue
                if job.replaces_file_id:
                    ids.append(job.replaces_file_id)
                made = job.landed_at is not None or job.state == "done" or not job.upload_id
                if made and job.file_id:  # (no session: a create that made it at once)
                    ids.append(job.file_id)
                if job.state != "done":
                    self.conn.execute(
                        "UPDATE jobs SET state = 'superseded', updated_at = ? WHERE id = ?",
                        (now, job.id),
                    )
            for f in ids:
                self._doom(f, "its name was removed", now)
        return list(dict.fromkeys(ids))

    # -- doomed drive files ---------------------------------------------------------------
    def _doom(
        self, file_id: str, reason: str, now: float, *, late_until: float | None = None
    ) -> None:
        """``late_until``: a complete of the file was sent and never answered, so the drive
        may land it until then: trashed once more after that moment."""
        self.conn.execute(
            "INSERT INTO doomed (file_id, reason, added_at, late_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(file_id) DO UPDATE SET late_until = NULLIF(MAX("
            "COALESCE(late_until, 0), COALESCE(excluded.late_until, 0)), 0)",
            (file_id, reason[:300], now, late_until),
        )

    def doom(self, file_ids: Iterable[str | None], reason: str) -> list[str]:
        ids = [f for f in file_ids if f]
        with self.conn:
            for f in ids:
                self._doom(f, reason, time.time())
        return ids

    def doomed(self) -> list[str]:
        """Every doomed drive file (listings hide them), trashed once already or not."""
        return [r[0] for r in self.conn.execute("SELECT file_id FROM doomed ORDER BY added_at")]

    def to_trash(self, now: float) -> list[str]:
        """Doomed files to trash now: never trashed, or trashed before their ``late_until``
        which has passed (once more: a complete in flight may have landed them since)."""
        rows = self.conn.execute(
            "SELECT file_id FROM doomed WHERE trashed_at IS NULL OR (late_until IS NOT NULL"
            " AND trashed_at < late_until AND late_until <= ?) ORDER BY added_at",
            (now,),
        ).fetchall()
        return [r[0] for r in rows]

    def is_dead(self, file_id: str) -> bool:
        """A drive file of ours that must go: doomed, or held by a superseded version."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM doomed WHERE file_id = ?)"
            " OR EXISTS (SELECT 1 FROM jobs WHERE file_id = ? AND state = 'superseded')",
            (file_id, file_id),
        ).fetchone()
        return bool(row[0])

    def trashed(self, file_id: str) -> None:
        """The drive confirmed ``file_id`` is gone (or never was): forgotten, unless a
        complete sent earlier may still land it (before its ``late_until``): then it is kept
        (hidden, and ``umount --wait`` waits) for one more trash after that moment."""
        now = time.time()
        with self.conn:
            self.conn.execute(
                "DELETE FROM doomed WHERE file_id = ? AND (late_until IS NULL OR late_until <= ?)",
                (file_id, now),
            )
            self.conn.execute("UPDATE doomed SET trashed_at = ? WHERE file_id = ?", (now, file_id))
        self._unhide(file_id)

    def retire_superseded(self, job_id: int) -> str | None:
        """A superseded job that holds a drive file (its session may have completed): the
        file is doomed and the job forgets it, in one transaction. Returns the file id."""
        job = self.get(job_id)
        if job is None or job.state != "superseded" or not job.file_id:
            return None
        with self.conn:
            late = job.completing_at + LATE if job.completing_at is not None else None
            self._doom(job.file_id, f"superseded version of {job.remote_path}", time.time(),
                       late_until=late)  # fmt: skip
            self.conn.execute(
                "UPDATE jobs SET file_id = NULL, upload_id = NULL WHERE id = ?", (job_id,)
            )
        return job.file_id

    # -- what listings may show -----------------------------------------------------------
    def hidden_file_ids(self) -> set[str]:
        """Drive files no listing may show: doomed ones, those of versions not landed
        (complete on the drive, its answer not yet checked, or lost to a stop: the name
        stands for the file the version replaces until it lands, and a superseded one may
        complete just before its session notices), and those of versions not yet at their
        final name (created under an earlier name or folder), in whatever folder the drive
        shows them: a move of one whose answer was lost (a stop, a kill) left it in the new
        folder under its old name, which the journal still records as where it was
        created."""
        rows = self.conn.execute(
            "SELECT file_id FROM jobs WHERE file_id IS NOT NULL"
            " AND (state = 'superseded' OR (landed_at IS NULL AND state != 'done')"
            "      OR parent_file_id != created_parent OR name != created_name)"
        ).fetchall()
        hidden = {r[0] for r in rows}
        hidden.update(self.doomed())
        return hidden

    def unhidden_since(self, since: float) -> set[str]:
        """Drive files ``hidden_file_ids`` stopped naming at or after ``since`` (monotonic):
        a listing asked for before then may show them where they no longer are (a file of
        ours at the name it was moved away from, a file since trashed). No query; only the
        newest entries are read (they are kept in time order)."""
        out: set[str] = set()
        for f in reversed(self._unhidden):
            if self._unhidden[f] < since:
                break
            out.add(f)
        return out

    def _unhide(self, file_id: str) -> None:
        now = time.monotonic()
        self._unhidden.pop(file_id, None)  # to the end: the dict stays in time order
        self._unhidden[file_id] = now
        while self._unhidden:  # the oldest go first
            oldest = next(iter(self._unhidden))
            if now - self._unhidden[oldest] < UNHIDDEN_KEEP:
                break
            del self._unhidden[oldest]

    def lost_creates(self, parent_file_id: str) -> dict[str, list[tuple[float, int]]]:
        """Names in a folder where a create whose answer was lost may have made a file of a
        version now bound for another name, or superseded (that file is to be trashed):
        {name: [(when the create was sent, the version's size)]}. Listings hide new files of
        such a name and size that no job or node knows until the upload adopts (and moves)
        or rules out the file, or the reaper's sweep trashes it."""
        rows = self.conn.execute(
            "SELECT created_name, rapid_at, size FROM jobs WHERE created_parent = ?"
            " AND rapid_at IS NOT NULL AND file_id IS NULL AND state != 'done'"
            " AND (state = 'superseded' OR parent_file_id != created_parent"
            "      OR name != created_name)",
            (parent_file_id,),
        ).fetchall()
        lost: dict[str, list[tuple[float, int]]] = {}
        for name, sent, size in rows:
            lost.setdefault(name, []).append((float(sent), int(size)))
        return lost

    def session_at(self, parent_file_id: str, name: str) -> bool:
        """Has an upload session a file at (folder, name) that may complete any moment (its
        job not landed: queued, uploading, or superseded with its complete in flight), or
        may a create that makes the file at once have made one there (its answer not in)?"""
        row = self.conn.execute(
            "SELECT 1 FROM jobs WHERE created_parent = ? AND created_name = ?"
            " AND landed_at IS NULL AND state IN ('pending', 'uploading', 'superseded')"
            " AND ((file_id IS NOT NULL AND upload_id IS NOT NULL)"
            "      OR (rapid_at IS NOT NULL AND file_id IS NULL)) LIMIT 1",
            (parent_file_id, name),
        ).fetchone()
        return row is not None

    def in_transit(self, parent_file_id: str, name: str) -> list[int]:
        """Jobs whose drive file may stand at (folder, name) on its way to another name
        (created there, renamed since): their post-steps move it."""
        rows = self.conn.execute(
            "SELECT id FROM jobs WHERE created_parent = ? AND created_name = ?"
            " AND file_id IS NOT NULL AND state = 'uploading'"
            " AND (parent_file_id != created_parent OR name != created_name)",
            (parent_file_id, name),
        ).fetchall()
        return [r[0] for r in rows]

    def local_jobs(self, parent_file_id: str) -> list[Job]:
        """Versions of files in a folder that the drive's listing cannot show (yet)."""
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM jobs WHERE parent_file_id = ?"
            " AND state IN ('pending', 'uploading', 'interrupted', 'failed') ORDER BY id",
            (parent_file_id,),
        ).fetchall()
        return [Job(*r) for r in rows]

    def name_jobs(self, parent_file_id: str, name: str) -> list[Job]:
        """Every job of one drive name that is not superseded (landed and done included)."""
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM jobs WHERE parent_file_id = ? AND name = ?"
            " AND state != 'superseded' ORDER BY id",
            (parent_file_id, name),
        ).fetchall()
        return [Job(*r) for r in rows]

    def supersede_older_duplicates(self) -> int:
        """Start-up repair (databases written before ``add`` superseded in one transaction):
        of several unlanded jobs for one drive name, only the newest may land."""
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET state = 'superseded', updated_at = ?"
                " WHERE state IN ('pending', 'uploading') AND landed_at IS NULL AND EXISTS"
                " (SELECT 1 FROM jobs AS newer"
                "  WHERE newer.parent_file_id = jobs.parent_file_id AND newer.name = jobs.name"
                "  AND newer.id > jobs.id AND newer.state IN ('pending', 'uploading'))",
                (time.time(),),
            )
        return cur.rowcount

    def retarget(self, job_id: int, *, parent_file_id: str, name: str, remote_path: str) -> None:
        """The version follows a rename (the caller superseded or abandoned what the new
        name held)."""
        self._set(job_id, parent_file_id=parent_file_id, name=name, remote_path=remote_path)

    def unpublish(self, job_id: int) -> bool:
        """A queued version nothing on the drive depends on yet (no session, or interrupted
        or failed) goes back to being written: its row goes, its cache file stays. The
        caller records it as an open version first."""
        with self.conn:
            cur = self.conn.execute(
                "DELETE FROM jobs WHERE id = ? AND landed_at IS NULL AND rapid_at IS NULL AND ("
                " state IN ('interrupted', 'failed') OR (state = 'pending' AND file_id IS NULL))",
                (job_id,),
            )
        return cur.rowcount == 1

    def set_replaces(self, job_id: int, file_id: str | None) -> None:
        self._set(job_id, replaces_file_id=file_id)

    def requeue_failed(self, job_ids: Iterable[int]) -> list[int]:
        """Failed versions go back to ``pending`` with no error and no retry time (``panfs
        retry``, once the cause is fixed); a job that is no longer failed is left alone.
        Returns the ids requeued."""
        done = []
        with self.conn:
            for job_id in job_ids:
                cur = self.conn.execute(
                    "UPDATE jobs SET state = 'pending', error = NULL, next_retry_at = NULL,"
                    " updated_at = ? WHERE id = ? AND state = 'failed' AND parent_file_id != ?",
                    (time.time(), job_id, RECOVERED_ID),
                )
                if cur.rowcount == 1:
                    done.append(job_id)
        return done

    def remove_landed(self, job_id: int) -> bool:
        """Drop a landed version that failed in its post-steps (``panfs forget``): its drive
        file is the name on the drive and stays (nothing is doomed). True when removed."""
        with self.conn:
            cur = self.conn.execute(
                "DELETE FROM jobs WHERE id = ? AND landed_at IS NOT NULL"
                " AND state IN ('failed', 'interrupted')",
                (job_id,),
            )
        return cur.rowcount == 1

    def remove(self, job_id: int) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def forget_done(self, job_id: int, file_id: str) -> None:
        """A landed version's row goes; the file it landed as stays known (``file_ids``)
        for ``2 * LATE``, across restarts: a lost create's search looking at the name then
        (a file renamed onto it, with the same bytes) must not take it for its own."""
        now = time.time()
        with self.conn:
            self.conn.execute("DELETE FROM landed WHERE at < ?", (now - 2 * LATE,))
            self.conn.execute(
                "INSERT OR REPLACE INTO landed (file_id, at) VALUES (?, ?)", (file_id, now)
            )
            self.conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    # -- the upload session's writes -----------------------------------------------------
    def set_identity(self, job_id: int, ident: tuple[int, int, int, str]) -> None:
        size, mtime_ns, inode, fp = ident
        self._set(job_id, size=size, mtime_ns=mtime_ns, inode=inode, fingerprint=fp)

    def start_session(
        self,
        job_id: int,
        *,
        file_id: str,
        upload_id: str,
        part_size: int,
        parent_file_id: str,
        name: str,
    ) -> None:
        """Durable intent: recorded before the first PUT of the session."""
        with self.conn:
            self.conn.execute("DELETE FROM parts WHERE job_id = ?", (job_id,))
            self.conn.execute(
                "UPDATE jobs SET file_id = ?, upload_id = ?, part_size = ?, created_parent = ?,"
                " created_name = ?, sent_bytes = 0, state = 'uploading', rapid_at = NULL,"
                " completing_at = NULL, updated_at = ?"
                " WHERE id = ? AND state != 'superseded'",
                (file_id, upload_id, part_size, parent_file_id, name, time.time(), job_id),
            )

    def drop_session(self, job_id: int) -> None:
        """The server lost the session (or it is unusable): forget it; a new one follows."""
        with self.conn:
            self.conn.execute("DELETE FROM parts WHERE job_id = ?", (job_id,))
            self.conn.execute(
                "UPDATE jobs SET file_id = NULL, upload_id = NULL, sent_bytes = 0,"
                " updated_at = ? WHERE id = ?",
                (time.time(), job_id),
            )

    def record_part(self, job_id: int, part: PartRecord) -> None:
        """After the server acknowledged the part (or we verified its stored copy)."""
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    part.part_number,
                    part.offset,
                    part.size,
                    part.etag,
                    part.xxh3,
                    part.acked_at,
                ),
            )
            self.conn.execute(
                "UPDATE jobs SET sent_bytes = ?, error = NULL, next_retry_at = NULL,"
                " updated_at = ? WHERE id = ?",
                (part.offset + part.size, time.time(), job_id),
            )

    def drop_parts_after(self, job_id: int, part_number: int) -> None:
        with self.conn:
            self.conn.execute(
                "DELETE FROM parts WHERE job_id = ? AND part_number > ?", (job_id, part_number)
            )

    def set_state(self, job_id: int, state: JobState, error: str | None = None) -> None:
        self._set(job_id, state=state, error=error, next_retry_at=None)

    def note_error(self, job_id: int, error: str, next_retry_at: float) -> None:
        self._set(job_id, error=error[:300], next_retry_at=next_retry_at)

    def mark_landed(self, job_id: int) -> None:
        """complete answered and the check agreed: this version is now the name on the
        drive, and its session is forgotten (a crash from here resumes at the post-steps).
        Sync, in the same step as the check that the job is not superseded. In the same
        transaction a version of the name still open for writing (or cut off by a crash
        before its close was queued) now replaces this file: recovery queues such a version
        with what its row says it replaces, and the file it recorded at open is retired by
        this landing (without this, a crash before that close left two copies)."""
        now = time.time()
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET landed_at = ?, upload_id = NULL, completing_at = NULL,"
                " updated_at = ? WHERE id = ? AND state = 'uploading'",
                (now, now, job_id),
            )
            if cur.rowcount:
                row = self.conn.execute(
                    "SELECT file_id, parent_file_id, name, replaces_file_id FROM jobs WHERE id = ?",
                    (job_id,),
                ).fetchone()
                if row is not None and row[0]:
                    self.conn.execute(
                        "UPDATE open_versions SET replaces_file_id = ?"
                        " WHERE parent_file_id = ? AND name = ?",
                        tuple(row[:3]),
                    )
                if row is not None and row[3]:
                    # an older version that landed the file this one retires, its post-steps
                    # (a move to a name given since) still under way, is over: its steps stop
                    # (it never ends failed and comes back with its old bytes), and the file
                    # it was itself to retire is doomed (nothing else would retire it)
                    marks = ",".join("?" * len(UNLANDED))
                    older = self.conn.execute(
                        "SELECT id, replaces_file_id FROM jobs WHERE id != ? AND file_id = ?"
                        f" AND landed_at IS NOT NULL AND state IN ({marks})",
                        (job_id, row[3], *UNLANDED),
                    ).fetchall()
                    for old_id, retires in older:
                        self.conn.execute(
                            "UPDATE jobs SET state = 'superseded', updated_at = ? WHERE id = ?",
                            (now, old_id),
                        )
                        if retires and retires != row[0]:
                            self._doom(retires, "replaced by a newer version", now)

    def note_completing(self, job_id: int, sent: bool) -> None:
        """``sent``: a complete goes out now (no await before it): until it is answered the
        drive may land the file, up to ``LATE`` seconds later. False: it was answered."""
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET completing_at = ? WHERE id = ?",
                (time.time() if sent else None, job_id),
            )

    def note_rapid_create(self, job_id: int, parent_file_id: str, name: str) -> None:
        """Durable intent before a create that makes the file at once (a rapid upload, an
        empty file): if its answer is lost (a crash, a dropped connection), the next try
        looks for the file there before creating another copy of the name."""
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET created_parent = ?, created_name = ?, rapid_at = ?,"
                " updated_at = ? WHERE id = ? AND file_id IS NULL",
                (parent_file_id, name, time.time(), time.time(), job_id),
            )

    def clear_rapid(self, job_id: int) -> None:
        """No file of a lost create was found: nothing of this job stands anywhere."""
        with self.conn:
            self.conn.execute("UPDATE jobs SET rapid_at = NULL WHERE id = ?", (job_id,))

    def file_ids(self) -> set[str]:
        """Every drive file a job of this journal knows (its own or the one it replaces)."""
        rows = self.conn.execute(
            "SELECT file_id FROM jobs WHERE file_id IS NOT NULL UNION"
            " SELECT replaces_file_id FROM jobs WHERE replaces_file_id IS NOT NULL"
            " UNION SELECT file_id FROM doomed UNION SELECT file_id FROM landed"
        ).fetchall()
        return {r[0] for r in rows}

    def note_file(self, job_id: int, file_id: str, parent_file_id: str, name: str) -> None:
        """A drive file of this job is (or will be) at (folder, name): recorded whatever the
        job's state, so a superseded job's file is still found and trashed; also each step
        of the post-steps' move (the file's place, journaled as it lands)."""
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET file_id = ?, upload_id = NULL, created_parent = ?,"
                " created_name = ?, rapid_at = NULL, updated_at = ? WHERE id = ?",
                (file_id, parent_file_id, name, time.time(), job_id),
            )
        self._unhide(file_id)  # (a move's step: no longer hidden where it was)

    def mark_done(self, job_id: int, size: int) -> None:
        """Only after complete returned and the server's SHA-1 equals ours."""
        self._set(job_id, state="done", sent_bytes=size, error=None, next_retry_at=None)


def _aside_name(job_id: int, name: str) -> str:
    """``<job id>-<name>``: unique in the recovery folder, within the name limit."""
    head = f"{job_id}-"
    raw = name.encode()[: 1024 - len(head)]
    return head + raw.decode(errors="ignore")
