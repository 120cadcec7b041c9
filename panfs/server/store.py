"""The drive server's storage: metadata in SQLite (WAL), content as files under ``--root``.

Owns: files and folders, upload sessions and their strictly sequential parts,
refresh tokens, quota accounting. Part bodies are appended to the session's data
file as they stream (parts are sequential, so one growing file per session), with
MD5 and SHA-1 computed on the way; a part is acknowledged only once its bytes are
fsynced and its row committed, so a SIGKILL'd server keeps every acknowledged part.
Must not: know HTTP, JSON bodies, faults or signatures (``app.py``/``oss.py`` do).
Sync only: called from the trio thread, big I/O in threads by the caller.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_id       TEXT PRIMARY KEY,          -- 40 hex chars; 'root' is implicit, never stored
    parent_id     TEXT NOT NULL,             -- 'root' for top level
    name          TEXT NOT NULL,
    type          TEXT NOT NULL,             -- 'file' | 'folder'
    size          INTEGER NOT NULL DEFAULT 0,
    content_hash  TEXT NOT NULL DEFAULT '',  -- upper-hex SHA-1, '' for folders
    status        TEXT NOT NULL,             -- 'uploading' (invisible) | 'available' | 'trashed'
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    upload_id     TEXT                       -- session that fills it while 'uploading'
);
CREATE INDEX IF NOT EXISTS files_parent ON files(parent_id, status, name);
CREATE TABLE IF NOT EXISTS sessions (
    upload_id     TEXT PRIMARY KEY,          -- 32 upper-hex chars
    file_id       TEXT NOT NULL,
    size          INTEGER NOT NULL,          -- declared size
    part_count    INTEGER NOT NULL,          -- parts planned at create
    content_hash  TEXT NOT NULL DEFAULT '',  -- declared at create ('' = none)
    state         TEXT NOT NULL,             -- 'open' | 'done' | 'aborted'
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload_id     TEXT NOT NULL,
    part_number   INTEGER NOT NULL,
    offset        INTEGER NOT NULL,          -- where the part starts in the session data file
    size          INTEGER NOT NULL,
    md5           TEXT NOT NULL,             -- upper hex, the ETag without quotes
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token         TEXT PRIMARY KEY,
    issued_at     REAL NOT NULL,
    used          INTEGER NOT NULL DEFAULT 0 -- 1 once exchanged: single-use
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

EMPTY_SHA1 = hashlib.sha1(b"").hexdigest().upper()


@dataclass(frozen=True)
class FileRow:
    file_id: str
    parent_id: str
    name: str
    type: str
    size: int
    content_hash: str
    status: str
    created_at: float
    updated_at: float
    upload_id: str | None


@dataclass(frozen=True)
class Session:
    upload_id: str
    file_id: str
    size: int
    part_count: int
    content_hash: str
    state: str
    created_at: float


@dataclass(frozen=True)
class Part:
    part_number: int
    offset: int
    size: int
    md5: str


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "sessions").mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "meta.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self._sha1: dict[str, tuple[int, hashlib._Hash]] = {}  # upload_id -> (bytes, running sha1)

    # -- meta ------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- tokens ----------------------------------------------------------------
    def new_refresh_token(self, token: str) -> None:
        self.db.execute("INSERT INTO refresh_tokens VALUES (?, ?, 0)", (token, time.time()))

    def use_refresh_token(self, token: str) -> tuple[bool, float] | None:
        """Mark used; returns (was it already used, issued_at) or None if unknown."""
        row = self.db.execute(
            "SELECT used, issued_at FROM refresh_tokens WHERE token = ?", (token,)
        ).fetchone()
        if row is None:
            return None
        self.db.execute("UPDATE refresh_tokens SET used = 1 WHERE token = ?", (token,))
        return bool(row[0]), float(row[1])

    # -- files -----------------------------------------------------------------
    def _file(self, row: tuple[object, ...] | None) -> FileRow | None:
        return FileRow(*row) if row else None  # type: ignore[arg-type]

    _COLS = (
        "file_id, parent_id, name, type, size, content_hash, status, created_at, updated_at,"
        " upload_id"
    )

    def get(self, file_id: str) -> FileRow | None:
        q = f"SELECT {self._COLS} FROM files WHERE file_id = ?"
        return self._file(self.db.execute(q, (file_id,)).fetchone())

    def children(self, parent_id: str, after: str, limit: int) -> list[FileRow]:
        q = (
            f"SELECT {self._COLS} FROM files WHERE parent_id = ? AND status = 'available'"
            " AND (name || char(0) || file_id) > ? ORDER BY name, file_id LIMIT ?"
        )
        return [FileRow(*r) for r in self.db.execute(q, (parent_id, after, limit))]

    def find(self, parent_id: str, name: str) -> FileRow | None:
        q = (
            f"SELECT {self._COLS} FROM files WHERE parent_id = ? AND name = ?"
            " AND status = 'available' LIMIT 1"
        )
        return self._file(self.db.execute(q, (parent_id, name)).fetchone())

    def names(self, parent_id: str) -> set[str]:
        q = "SELECT name FROM files WHERE parent_id = ? AND status = 'available'"
        return {r[0] for r in self.db.execute(q, (parent_id,))}

    def add_file(
        self,
        parent_id: str,
        name: str,
        type_: str,
        *,
        size: int = 0,
        status: str = "available",
        content_hash: str = "",
        upload_id: str | None = None,
    ) -> FileRow:
        fid = secrets.token_hex(20)
        now = time.time()
        self.db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fid, parent_id, name, type_, size, content_hash, status, now, now, upload_id),
        )
        row = self.get(fid)
        assert row is not None
        return row

    def update(self, file_id: str, **fields: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(
            f"UPDATE files SET {sets}, updated_at = ? WHERE file_id = ?",
            (*fields.values(), time.time(), file_id),
        )

    def used_size(self) -> int:
        row = self.db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM files WHERE type = 'file' AND status = 'available'"
        ).fetchone()
        return int(row[0])

    def by_hash(self, content_hash: str, size: int) -> FileRow | None:
        q = (
            f"SELECT {self._COLS} FROM files WHERE content_hash = ? AND size = ?"
            " AND status = 'available' LIMIT 1"
        )
        return self._file(self.db.execute(q, (content_hash.upper(), size)).fetchone())

    def blob(self, file_id: str) -> Path:
        return self.root / "blobs" / file_id

    def pre_hash_match(self, pre_hash: str, size: int) -> bool:
        for (fid,) in self.db.execute(
            "SELECT file_id FROM files WHERE type = 'file' AND status = 'available' AND size = ?",
            (size,),
        ):
            try:
                with open(self.blob(fid), "rb") as f:
                    head = f.read(1024)
            except OSError:
                continue
            if hashlib.sha1(head).hexdigest().upper() == pre_hash.upper():
                return True
        return False

    def link_blob(self, src_file_id: str, dst_file_id: str) -> None:
        os.link(self.blob(src_file_id), self.blob(dst_file_id))

    # -- sessions --------------------------------------------------------------
    def new_session(self, file_id: str, size: int, part_count: int, content_hash: str) -> Session:
        uid = secrets.token_hex(16).upper()
        now = time.time()
        self.db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, 'open', ?)",
            (uid, file_id, size, part_count, content_hash.upper(), now),
        )
        self.data_path(uid).touch()
        return Session(uid, file_id, size, part_count, content_hash.upper(), "open", now)

    def session(self, upload_id: str) -> Session | None:
        row = self.db.execute(
            "SELECT upload_id, file_id, size, part_count, content_hash, state, created_at"
            " FROM sessions WHERE upload_id = ?",
            (upload_id,),
        ).fetchone()
        return Session(*row) if row else None

    def set_session_state(self, upload_id: str, state: str) -> None:
        self.db.execute("UPDATE sessions SET state = ? WHERE upload_id = ?", (state, upload_id))

    def data_path(self, upload_id: str) -> Path:
        return self.root / "sessions" / upload_id

    def parts(self, upload_id: str, after: int = 0, limit: int = 10**6) -> list[Part]:
        q = (
            "SELECT part_number, offset, size, md5 FROM parts WHERE upload_id = ?"
            " AND part_number > ? ORDER BY part_number LIMIT ?"
        )
        return [Part(*r) for r in self.db.execute(q, (upload_id, after, limit))]

    def last_part(self, upload_id: str) -> Part | None:
        row = self.db.execute(
            "SELECT part_number, offset, size, md5 FROM parts WHERE upload_id = ?"
            " ORDER BY part_number DESC LIMIT 1",
            (upload_id,),
        ).fetchone()
        return Part(*row) if row else None

    def part(self, upload_id: str, number: int) -> Part | None:
        row = self.db.execute(
            "SELECT part_number, offset, size, md5 FROM parts WHERE upload_id = ?"
            " AND part_number = ?",
            (upload_id, number),
        ).fetchone()
        return Part(*row) if row else None

    def running_sha1(self, upload_id: str, end: int) -> hashlib._Hash:
        """The session's SHA-1 over bytes [0, end), from memory or (after a restart) from disk."""
        cached = self._sha1.get(upload_id)
        if cached and cached[0] == end:
            return cached[1].copy()
        h = hashlib.sha1()
        with open(self.data_path(upload_id), "rb") as f:
            left = end
            while left > 0:
                chunk = f.read(min(left, 8 << 20))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
        self._sha1[upload_id] = (end, h.copy())
        return h

    def commit_part(self, upload_id: str, part: Part, sha1: hashlib._Hash) -> None:
        self.db.execute(
            "INSERT INTO parts VALUES (?, ?, ?, ?, ?)",
            (upload_id, part.part_number, part.offset, part.size, part.md5),
        )
        self._sha1[upload_id] = (part.offset + part.size, sha1)

    def finish(self, upload_id: str, file_id: str, total: int, sha1_hex: str) -> None:
        """Publish the session's bytes as the file's content (rename, then one commit)."""
        path = self.data_path(upload_id)
        with open(path, "rb+") as f:
            f.truncate(total)
        os.replace(path, self.blob(file_id))
        self.db.execute("BEGIN")
        self.db.execute("UPDATE sessions SET state = 'done' WHERE upload_id = ?", (upload_id,))
        self.db.execute(
            "UPDATE files SET status = 'available', size = ?, content_hash = ?, upload_id = NULL,"
            " updated_at = ? WHERE file_id = ?",
            (total, sha1_hex, time.time(), file_id),
        )
        self.db.execute("COMMIT")
        self._sha1.pop(upload_id, None)
