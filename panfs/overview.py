"""What a mount's state says, read-only: for ``panfs status``, ``umount --wait``, ``retry``.

Owns: opening a state dir's journal read-only (beside a running daemon: SQLite
WAL; as another user: one line instead of a traceback), listing the files that
are waiting, uploading, failed or interrupted (including versions still in
``open_versions``: closed but not yet queued, or cut off if no daemon runs),
each uploading file's rate (bytes acknowledged over the last RATE_WINDOW seconds,
one query for all), whether a daemon holds the state dir, and since when the drive
has not acknowledged anything while errors repeat. Must not: write anything.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from panfs import health as drive_health
from panfs import lock
from panfs.errors import LocalError
from panfs.journal import HOLDING

WAITING = ("pending", "uploading")
_JOBS = (
    "SELECT id, remote_path, state, size, sent_bytes, error, next_retry_at, source, updated_at"
    " FROM jobs WHERE state IN ('pending', 'uploading', 'failed', 'interrupted') ORDER BY id"
)
RATE_WINDOW = 30.0  # seconds of acknowledged parts a rate is measured over
# per job: bytes acknowledged in the window after its first part there (whose sending began
# before the window), and the span between its first and last acknowledgement there
_RATES = (
    "SELECT job_id, sum(CASE WHEN n > 1 THEN size ELSE 0 END), max(acked_at) - min(acked_at)"
    " FROM (SELECT job_id, size, acked_at,"
    "  row_number() OVER (PARTITION BY job_id ORDER BY part_number) AS n"
    "  FROM parts WHERE acked_at >= ?) GROUP BY job_id"
)
ATTENTION = ("failed", "interrupted")


@dataclass(frozen=True)
class FileState:
    id: int | None  # journal job id; None for a version not yet queued
    path: str  # on the drive
    state: str  # pending, uploading, failed, interrupted, closed (queued on release)
    size: int
    sent: int
    error: str | None
    next_retry_at: float | None
    source: str
    updated_at: float
    rate: float = 0.0  # bytes/s the drive acknowledged over the last RATE_WINDOW seconds
    db: str | None = None  # the journal holding it, when not the mount's (a panfs upload)


@contextmanager
def open_ro(journal: Path) -> Iterator[sqlite3.Connection]:
    """The journal, read-only; one line if this user cannot read it."""
    if not journal.exists():
        raise FileNotFoundError(journal)
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30)
        conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
    except sqlite3.Error as e:
        raise LocalError(
            f"cannot read the journal {journal} ({e}); run this as the user that mounted "
            "(or root), or point --config at that mount's config"
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def _closed_whole(size: int | None, mtime_ns: int | None, path: str) -> bool:
    if size is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)


@dataclass
class Overview:
    files: list[FileState]
    daemon: bool
    journal: Path
    now: float

    @property
    def waiting(self) -> list[FileState]:
        return [f for f in self.files if f.state in (*WAITING, "closed")]

    @property
    def attention(self) -> list[FileState]:
        return [f for f in self.files if f.state in ATTENTION]

    @property
    def mount_waiting(self) -> list[FileState]:
        """What the mount itself still has to upload (``panfs upload`` runs keep their own
        journals beside it, and their own pace: ``umount --wait`` does not wait for them)."""
        return [f for f in self.waiting if f.db is None]

    @property
    def mount_attention(self) -> list[FileState]:
        return [f for f in self.attention if f.db is None]

    health: dict[str, object] | None = None  # the daemon's drive-health.json, if any
    # drive files still to trash (doomed, or held by superseded versions): until they are
    # gone the drive may hold an extra copy of a name
    cleanup: int = 0

    def unreachable_since(self) -> float | None:
        """Since when the drive has failed every upload try, as the running daemon saw it."""
        if not self.daemon or self.health is None or not self.waiting:
            return None
        since = self.health.get("since")
        return float(since) if isinstance(since, int | float) else None

    @property
    def last_error(self) -> str | None:
        err = (self.health or {}).get("error")
        return err if isinstance(err, str) else None


def read(journal: Path) -> Overview:
    state_dir = journal.parent
    if state_dir.exists() and not os.access(state_dir, os.R_OK | os.X_OK):
        raise LocalError(
            f"cannot read the state dir {state_dir}: permission denied; run this as the user "
            "that mounted (or root)"
        )
    alive = lock.is_held(state_dir)
    now = time.time()
    files: list[FileState] = []
    cleanup = 0
    versions: list[tuple[str, str, float, int | None, int | None]] = []
    if journal.exists():  # the mount's journal (none before the first mount)
        with open_ro(journal) as conn:
            files += _jobs(conn, now)
            try:
                cleanup = conn.execute(
                    "SELECT (SELECT count(*) FROM doomed)"
                    f" + (SELECT count(*) FROM jobs WHERE {HOLDING})"
                ).fetchone()[0]
            except sqlite3.OperationalError:
                cleanup = 0
            try:
                versions = conn.execute(
                    "SELECT cache_path, remote_path, opened_at, flushed_size, flushed_mtime_ns"
                    " FROM open_versions ORDER BY opened_at"
                ).fetchall()
            except sqlite3.OperationalError:
                versions = []
    queued = {f.source for f in files}
    for extra in sorted(state_dir.glob("uploads/*/journal.db")):
        # each `panfs upload` command keeps its own journal beside the mount's
        try:
            with open_ro(extra) as conn:
                files += [replace(f, db=str(extra)) for f in _jobs(conn, now)]
        except (LocalError, FileNotFoundError, sqlite3.Error):
            continue
    for path, remote, opened_at, fsize, fmtime in versions:
        if path in queued:
            continue
        try:
            size = os.stat(path).st_size
        except OSError:
            size = fsize or 0
        whole = _closed_whole(fsize, fmtime, path)
        if alive and not whole:
            continue  # being written right now: not a file to report
        state = "closed" if whole else "interrupted"
        error = None if whole else "its writer was cut off (the daemon stopped)"
        files.append(FileState(None, remote, state, size, 0, error, None, path, opened_at))
    health = drive_health.read(state_dir) if alive else None
    ov = Overview(files, alive, journal, now, health, int(cleanup))
    if ov.unreachable_since() is not None:
        # an upload that is failing has no rate, whatever it had a minute ago
        ov.files = [replace(f, rate=0.0) for f in files]
    return ov


def _jobs(conn: sqlite3.Connection, now: float) -> list[FileState]:
    """The journal's files to report, each uploading one with its rate (one query for all)."""
    rates = {
        job_id: sent / span
        for job_id, sent, span in conn.execute(_RATES, (now - RATE_WINDOW,))
        if span and span > 0
    }
    out = []
    for row in conn.execute(_JOBS):
        f = FileState(*row)
        if f.state == "uploading" and not f.error and f.id in rates:
            f = replace(f, rate=rates[f.id])
        out.append(f)
    return out
