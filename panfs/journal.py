"""The upload journal: one row per version of a file to put on the drive, and its parts.

Owns: the durable upload state machine, written at the moments the durability
rules require: the session (file_id, upload_id, part plan) before the first PUT,
each part after the server acknowledged it, "done" only after the hashes agreed.
Must not: talk to the drive or read file contents (the upload session does).
Sync, on the trio thread; every method commits before it returns.

States: ``pending`` → ``uploading`` → ``done``; ``failed`` (permanent reason in
``error``); ``superseded`` (a newer version exists: never completes);
``interrupted`` (its writer was cut off: never uploaded until the user acts).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import xxhash

JobState = Literal["pending", "uploading", "done", "failed", "superseded", "interrupted"]
ACTIVE: tuple[JobState, ...] = ("pending", "uploading")

_COLS = (
    "id, source, size, mtime_ns, inode, fingerprint, parent_file_id, name, remote_path,"
    " replaces_file_id, state, file_id, upload_id, created_parent, created_name, part_size,"
    " sent_bytes, error, next_retry_at, created_at, updated_at"
)


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

    @property
    def identity(self) -> tuple[int, int, int, str]:
        return (self.size, self.mtime_ns, self.inode, self.fingerprint)


@dataclass(frozen=True)
class PartRecord:
    part_number: int
    offset: int
    size: int
    etag: str
    xxh3: str
    acked_at: float


def identity(path: str) -> tuple[int, int, int, str]:
    """(size, mtime_ns, inode, fingerprint): the fingerprint samples head, middle and tail."""
    st = os.stat(path)
    h = xxhash.xxh3_64()
    h.update(st.st_size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        for off in sorted({0, max(0, st.st_size // 2 - 32768), max(0, st.st_size - 65536)}):
            f.seek(off)
            h.update(f.read(65536))
    return st.st_size, st.st_mtime_ns, st.st_ino, h.hexdigest()


class Journal:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

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

    def superseded_file_ids(self, parent_file_id: str) -> set[str]:
        """Drive files of superseded versions in a folder: a listing must not resurrect them
        (one may complete on the drive just before its session notices and trashes it)."""
        rows = self.conn.execute(
            "SELECT file_id FROM jobs WHERE state = 'superseded' AND file_id IS NOT NULL"
            " AND created_parent = ?",
            (parent_file_id,),
        ).fetchall()
        return {r[0] for r in rows}

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
    ) -> Job:
        size, mtime_ns, inode, fp = identity(source)
        now = time.time()
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO jobs (source, size, mtime_ns, inode, fingerprint, parent_file_id,"
                " name, remote_path, replaces_file_id, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source,
                    size,
                    mtime_ns,
                    inode,
                    fp,
                    parent_file_id,
                    name,
                    remote_path,
                    replaces_file_id,
                    state,
                    now,
                    now,
                ),
            )
        job = self.get(int(cur.lastrowid or 0))
        assert job is not None
        return job

    def _set(self, job_id: int, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        # superseded is final: no later write of the old session may revive the job
        guard = " AND state != 'superseded'" if "state" in fields else ""
        with self.conn:
            self.conn.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE id = ?{guard}",
                (*fields.values(), time.time(), job_id),
            )

    def supersede(self, job_id: int) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET state = 'superseded', updated_at = ?"
                " WHERE id = ? AND state IN ('pending', 'uploading', 'interrupted', 'failed')",
                (time.time(), job_id),
            )

    def supersede_older_duplicates(self) -> int:
        """Start-up repair: of several active jobs for one drive name, only the newest may
        land (a daemon that died between queueing a version and superseding the one before
        leaves two). Returns how many were superseded."""
        with self.conn:
            cur = self.conn.execute(
                "UPDATE jobs SET state = 'superseded', updated_at = ?"
                " WHERE state IN ('pending', 'uploading') AND EXISTS (SELECT 1 FROM jobs AS newer"
                "  WHERE newer.parent_file_id = jobs.parent_file_id AND newer.name = jobs.name"
                "  AND newer.id > jobs.id AND newer.state IN ('pending', 'uploading'))",
                (time.time(),),
            )
        return cur.rowcount

    def retarget(self, job_id: int, *, parent_file_id: str, name: str, remote_path: str) -> None:
        self._set(job_id, parent_file_id=parent_file_id, name=name, remote_path=remote_path)

    def set_replaces(self, job_id: int, file_id: str | None) -> None:
        self._set(job_id, replaces_file_id=file_id)

    def remove(self, job_id: int) -> None:
        with self.conn:
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
                " created_name = ?, sent_bytes = 0, state = 'uploading', updated_at = ?"
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

    def mark_rapid(self, job_id: int, file_id: str, parent_file_id: str, name: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE jobs SET file_id = ?, upload_id = NULL, created_parent = ?,"
                " created_name = ?, updated_at = ? WHERE id = ?",
                (file_id, parent_file_id, name, time.time(), job_id),
            )

    def mark_done(self, job_id: int, size: int) -> None:
        """Only after complete returned and the server's SHA-1 equals ours."""
        self._set(job_id, state="done", sent_bytes=size, error=None, next_retry_at=None)
