"""The local SQLite database (WAL): the whole schema in one place.

Owns: opening the state database with WAL and ``synchronous=NORMAL``: a commit
is in the WAL at once (a killed daemon loses nothing committed) and survives a power
cut once ``durability.Syncer`` fsyncs the WAL, at most a second later (or at once,
when a program calls ``fsync()``); checkpoints run there too, off the trio thread
(the automatic one is only a backstop). And the schema of every table panfs keeps locally:
the upload journal (``jobs``, ``parts``), the mount's open versions, its clean
cache index and the attributes it keeps locally (mode, owner, times). Must not:
hold queries (``journal.py`` and ``pending.py`` do). The connection is used on
the trio thread only.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from panfs.errors import StateError

# result codes of a write the database refused for a reason outside the SQL (``StateError``)
_REFUSALS = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
}  # fmt: skip

SCHEMA_VERSION = 1

SCHEMA = [
    """
    CREATE TABLE IF NOT EXISTS jobs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: newer is larger
        source           TEXT NOT NULL,         -- absolute path of the local bytes
        size             INTEGER NOT NULL,      -- local identity when enqueued / last planned:
        mtime_ns         INTEGER NOT NULL,      --   size, mtime, inode and a sampled xxh3
        inode            INTEGER NOT NULL,
        fingerprint      TEXT NOT NULL,
        parent_file_id   TEXT NOT NULL,         -- target folder on the drive
        name             TEXT NOT NULL,         -- target name there
        remote_path      TEXT NOT NULL,         -- for people: status lines, logs
        replaces_file_id TEXT,                  -- trashed once this one landed; NULL none
        state            TEXT NOT NULL,         -- see journal.py: pending .. interrupted
        file_id          TEXT,                  -- session: the drive's file, NULL before create
        upload_id        TEXT,                  -- session: NULL before create / after rapid upload
        created_parent   TEXT,                  -- where the session's file was created
        created_name     TEXT,                  --   (a later retarget moves it after complete)
        part_size        INTEGER,               -- session: nominal part size planned
        sent_bytes       INTEGER NOT NULL DEFAULT 0,  -- bytes the server acknowledged
        error            TEXT,                  -- last error, one line; NULL none
        next_retry_at    REAL,                  -- unix seconds of the next try (error, delay)
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        landed_at        REAL,                  -- complete answered, hashes agreed: this version
                                                --   IS the name on the drive (post-steps remain?)
        rapid_at         REAL,                  -- a create that makes the file at once (rapid,
                                                --   empty) was sent at (created_parent,
                                                --   created_name): its answer may be lost
        completing_at    REAL                   -- complete sent then, not answered yet: the
                                                --   drive may still land the file until LATE
    )
    """,
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)",
    "CREATE INDEX IF NOT EXISTS jobs_source ON jobs(source)",
    """
    CREATE TABLE IF NOT EXISTS parts (
        job_id       INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        part_number  INTEGER NOT NULL,          -- 1-based, strictly sequential
        offset       INTEGER NOT NULL,          -- where it starts in the source
        size         INTEGER NOT NULL,          -- as the server stored it
        etag         TEXT NOT NULL,             -- server ETag = MD5, upper hex, no quotes
        xxh3         TEXT NOT NULL,             -- local xxh3-64 of the same bytes
        acked_at     REAL NOT NULL,             -- when the server acknowledged it
        PRIMARY KEY (job_id, part_number)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS open_versions (
        cache_path       TEXT PRIMARY KEY,      -- the cache file holding this version's bytes
        parent_file_id   TEXT NOT NULL,         -- drive folder it belongs in
        name             TEXT NOT NULL,         -- its name there
        remote_path      TEXT NOT NULL,         -- for status messages only
        replaces_file_id TEXT,                  -- drive file it will replace; NULL = new file
        opened_at        REAL NOT NULL,         -- unix seconds
        flushed_size     INTEGER,               -- the cache file at the last writer's close()
        flushed_mtime_ns INTEGER                --   (FLUSH); NULL: never closed
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS landed (
        file_id   TEXT PRIMARY KEY,             -- a drive file a version of ours landed as,
        at        REAL NOT NULL                 --   its job done and gone: still ours for a
    )                                           --   while (journal.Journal.forget_done)
    """,
    # each landing drops the rows past 2 x LATE: found by time, not by a scan of them all
    "CREATE INDEX IF NOT EXISTS landed_at ON landed(at)",
    """
    CREATE TABLE IF NOT EXISTS doomed (
        file_id   TEXT PRIMARY KEY,             -- a drive file of ours no name may show again:
        reason    TEXT NOT NULL,                --   the reaper trashes it (retried until gone)
        added_at  REAL NOT NULL,
        trashed_at REAL,                        -- last trashed then
        late_until REAL                         -- a complete of it sent, never answered, may
                                                --   land it until then: trashed once more
                                                --   after it, then forgotten
    )
    """,
    "CREATE INDEX IF NOT EXISTS jobs_name ON jobs(parent_file_id, name)",
    # mkdir, rename and listings ask what sessions were made under a folder or name: without
    # it each asking scanned every queued job (0.19 ms with 2,000 queued; with it 2 us)
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_parent, created_name)",
    """
    CREATE TABLE IF NOT EXISTS clean (
        file_id   TEXT PRIMARY KEY,             -- drive file whose bytes are cached
        path      TEXT NOT NULL,                -- the cache file (sparse while partly present)
        size      INTEGER NOT NULL,             -- the drive file's size
        ranges    TEXT NOT NULL,                -- JSON [[start, end], ...] present, merged
        used_at   REAL NOT NULL                 -- last use, for least-recently-used eviction
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS attrs (
        key       TEXT PRIMARY KEY,             -- 'f:' + drive file_id, or 'v:' + cache path
        mode      INTEGER NOT NULL,             --   of a local version not yet on the drive
        uid       INTEGER NOT NULL,
        gid       INTEGER NOT NULL,
        atime_ns  INTEGER NOT NULL,
        mtime_ns  INTEGER NOT NULL
    )
    """,
]


def open_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=16384")  # backstop: 64 MiB of WAL
    conn.execute("PRAGMA foreign_keys=ON")
    with conn:
        for stmt in SCHEMA:
            conn.execute(stmt)
        _add_columns(conn, "open_versions", {"flushed_size": "INTEGER",
                                             "flushed_mtime_ns": "INTEGER"})  # fmt: skip
        _add_columns(conn, "jobs", {"landed_at": "REAL", "rapid_at": "REAL",
                                    "completing_at": "REAL"})  # fmt: skip
        _add_columns(conn, "doomed", {"trashed_at": "REAL", "late_until": "REAL"})
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One commit for the writes inside: like ``with conn:``, but a block entered while a
    transaction is open joins it (the outermost block commits, or rolls everything back),
    so several stores' writes of one step cost one commit. The write lock is taken at the
    start (``BEGIN IMMEDIATE``): a block that reads before it writes would otherwise be
    refused at its first write, at once and without the busy wait, whenever another
    connection (``panfs umount --wait``, ``status``, ``retry``) wrote since its read.
    A write the database refuses (its disk full, read-only or failing, the busy timeout) is
    classified here: ``StateError``, with its errno; an error in the SQL itself stays
    what it is (a bug)."""
    if conn.in_transaction:
        yield
        return
    with _classified():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.commit()
        except BaseException:
            conn.rollback()  # also when the commit failed: never left open (every later
            raise  # block would join it and nothing would commit again)


@contextlib.contextmanager
def savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    """Inside an open transaction (``transaction``): when the block raises, its writes
    alone are undone and the transaction goes on, so that many steps can share one commit
    and one of them still fail on its own. Refusals are classified as in ``transaction``.
    After some refusals (a full or failing disk) SQLite has rolled the whole transaction
    back: the caller checks ``conn.in_transaction`` before it goes on."""
    assert conn.in_transaction
    with _classified():
        conn.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            if conn.in_transaction:  # (not rolled back whole by SQLite)
                conn.execute("ROLLBACK TO step")
                conn.execute("RELEASE step")
            raise
        conn.execute("RELEASE step")


@contextlib.contextmanager
def _classified() -> Iterator[None]:
    """A write the database refused becomes ``StateError`` with its errno; an error in the
    SQL itself (a bug) stays what it is."""
    try:
        yield
    except sqlite3.OperationalError as e:
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF  # the primary result code
        if code not in _REFUSALS:
            raise
        full = code == sqlite3.SQLITE_FULL
        raise StateError(
            f"the state database refused a write ({e})",
            err=errno.ENOSPC if full else errno.EIO,
        ) from e


def _add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Columns added after a table first shipped (an older database gains them)."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
