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
from dataclasses import dataclass, replace

from panfs.metadata import transaction

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
    """Sync; each call commits (the journal's connection, WAL), or joins the transaction
    open on it (``metadata.transaction``). The rows are mirrored in memory (this object is
    their only writer while the mount runs, but for ``Journal.mark_landed``'s one column:
    see ``landed``), so ``get`` runs no query."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn  # schema: panfs.metadata
        self._rows: dict[str, OpenVersion] = {}
        self.reload()

    def _select(self) -> list[OpenVersion]:
        rows = self.conn.execute(f"SELECT {_COLS} FROM open_versions ORDER BY opened_at").fetchall()
        return [OpenVersion(*r) for r in rows]

    def reload(self) -> None:
        """Read the rows again (after a transaction that changed them was rolled back)."""
        self._rows = {v.cache_path: v for v in self._select()}

    def add(
        self,
        *,
        cache_path: str,
        parent_file_id: str,
        name: str,
        remote_path: str,
        replaces_file_id: str | None,
    ) -> None:
        v = OpenVersion(cache_path, parent_file_id, name, remote_path, replaces_file_id,
                        time.time())  # fmt: skip
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO open_versions VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                (cache_path, parent_file_id, name, remote_path, replaces_file_id, v.opened_at),
            )
        self._rows[cache_path] = v

    def get(self, cache_path: str) -> OpenVersion | None:
        return self._rows.get(cache_path)

    def all(self) -> list[OpenVersion]:
        return sorted(self._rows.values(), key=lambda v: v.opened_at)

    def retarget(
        self,
        cache_path: str,
        parent_file_id: str,
        name: str,
        remote_path: str,
        replaces_file_id: str | None,
    ) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE open_versions SET parent_file_id = ?, name = ?, remote_path = ?,"
                " replaces_file_id = COALESCE(?, replaces_file_id) WHERE cache_path = ?",
                (parent_file_id, name, remote_path, replaces_file_id, cache_path),
            )
        v = self._rows.get(cache_path)
        if v is not None:
            self._rows[cache_path] = replace(
                v, parent_file_id=parent_file_id, name=name, remote_path=remote_path,
                replaces_file_id=replaces_file_id or v.replaces_file_id,
            )  # fmt: skip

    def mark_flushed(self, cache_path: str, size: int, mtime_ns: int) -> None:
        """Its last writer called close() (FLUSH) with the file in this state."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE open_versions SET flushed_size = ?, flushed_mtime_ns = ?"
                " WHERE cache_path = ?",
                (size, mtime_ns, cache_path),
            )
        v = self._rows.get(cache_path)
        if v is not None:
            self._rows[cache_path] = replace(v, flushed_size=size, flushed_mtime_ns=mtime_ns)

    def set_replaces(self, cache_path: str, file_id: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE open_versions SET replaces_file_id = ? WHERE cache_path = ?",
                (file_id, cache_path),
            )
        v = self._rows.get(cache_path)
        if v is not None:
            self._rows[cache_path] = replace(v, replaces_file_id=file_id)

    def landed(self, parent_file_id: str, name: str, file_id: str) -> None:
        """A version of (folder, name) landed as ``file_id``: ``Journal.mark_landed`` made
        the open versions of that name replace it in the landing's own transaction (the one
        row written elsewhere, for a crash right after); the mirror follows."""
        for v in list(self._rows.values()):
            if (v.parent_file_id, v.name) == (parent_file_id, name):
                self._rows[v.cache_path] = replace(v, replaces_file_id=file_id)

    def remove(self, cache_path: str) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM open_versions WHERE cache_path = ?", (cache_path,))
        self._rows.pop(cache_path, None)
