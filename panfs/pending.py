"""Durable record of versions still open for writing (the mount's crash marker).

Owns: one SQLite table, ``open_versions``: a row exists from before the first
byte of a new version is written until its last writer closed and the version
became a journal job. A row found at start-up means the daemon stopped before
the last close was handled: if the last writer's close() (FLUSH) was recorded and
the file is unchanged since, the version was whole and is queued; otherwise the
writer was cut off and ``recovery.Recovery`` makes it an ``interrupted`` job. Must not: upload,
or touch cache files.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

_COLS = (
    "cache_path, parent_file_id, name, remote_path, replaces_file_id, opened_at,"
    " flushed_size, flushed_mtime_ns"
)


@dataclass(frozen=True)
class OpenVersion:
    cache_path: str
    parent_file_id: str
    name: str
    remote_path: str
    replaces_file_id: str | None
    opened_at: float
    flushed_size: int | None = None  # the file as its last writer closed it, if it did
    flushed_mtime_ns: int | None = None


class OpenVersions:
    """Sync; each call commits (the journal's connection, WAL)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn  # schema: panfs.metadata

    def add(
        self,
        *,
        cache_path: str,
        parent_file_id: str,
        name: str,
        remote_path: str,
        replaces_file_id: str | None,
    ) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO open_versions VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                (cache_path, parent_file_id, name, remote_path, replaces_file_id, time.time()),
            )

    def get(self, cache_path: str) -> OpenVersion | None:
        row = self.conn.execute(
            f"SELECT {_COLS} FROM open_versions WHERE cache_path = ?",
            (cache_path,),
        ).fetchone()
        return OpenVersion(*row) if row else None

    def all(self) -> list[OpenVersion]:
        rows = self.conn.execute(f"SELECT {_COLS} FROM open_versions ORDER BY opened_at").fetchall()
        return [OpenVersion(*r) for r in rows]

    def retarget(
        self,
        cache_path: str,
        parent_file_id: str,
        name: str,
        remote_path: str,
        replaces_file_id: str | None,
    ) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE open_versions SET parent_file_id = ?, name = ?, remote_path = ?,"
                " replaces_file_id = COALESCE(?, replaces_file_id) WHERE cache_path = ?",
                (parent_file_id, name, remote_path, replaces_file_id, cache_path),
            )

    def mark_flushed(self, cache_path: str, size: int, mtime_ns: int) -> None:
        """Its last writer called close() (FLUSH) with the file in this state."""
        with self.conn:
            self.conn.execute(
                "UPDATE open_versions SET flushed_size = ?, flushed_mtime_ns = ?"
                " WHERE cache_path = ?",
                (size, mtime_ns, cache_path),
            )

    def set_replaces(self, cache_path: str, file_id: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE open_versions SET replaces_file_id = ? WHERE cache_path = ?",
                (file_id, cache_path),
            )

    def remove(self, cache_path: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM open_versions WHERE cache_path = ?", (cache_path,))
