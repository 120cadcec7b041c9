"""Attributes the drive cannot hold, kept locally: mode, owner, times.

Owns: the ``attrs`` table. A drive file or folder is keyed ``f:FILE_ID``; a local
version not yet on the drive is keyed ``v:CACHE_PATH`` and re-keyed to its
``file_id`` once uploaded, so ``cp -p`` and ``rsync -a`` see what they set, also
after a remount. Must not: decide when attributes change (the core does).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from panfs.metadata import transaction


@dataclass(frozen=True)
class Attrs:
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int


CLOCK_REALTIME_COARSE = 5  # Linux's (the time module does not name it)


def file_time_ns() -> int:
    """Now, as the kernel stamps a file it changes (its coarse clock, a tick's resolution):
    a new file's times from this clock are left as they are by a write in the same tick,
    so its close() sends no SETATTR of the times (the kernel keeps them under writeback
    caching and sends them back only when it changed them): one request fewer per small
    file."""
    return time.clock_gettime_ns(CLOCK_REALTIME_COARSE)


def drive_key(file_id: str) -> str:
    return "f:" + file_id


def version_key(cache_path: str) -> str:
    return "v:" + cache_path


class AttrStore:
    """Sync; each write commits (the journal's connection, WAL); ``put`` joins a
    transaction open on it (``metadata.transaction``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn  # schema: panfs.metadata

    def get(self, key: str) -> Attrs | None:
        row = self.conn.execute(
            "SELECT mode, uid, gid, atime_ns, mtime_ns FROM attrs WHERE key = ?", (key,)
        ).fetchone()
        return Attrs(*row) if row else None

    def put(self, key: str, a: Attrs) -> None:
        with transaction(self.conn):  # or joins the caller's
            self.conn.execute(
                "INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?, ?, ?)",
                (key, a.mode, a.uid, a.gid, a.atime_ns, a.mtime_ns),
            )

    def rekey(self, old: str, new: str) -> None:
        """A version became a drive file: its attributes follow (no-op without a row)."""
        with self.conn:
            self.conn.execute("DELETE FROM attrs WHERE key = ? AND EXISTS"
                              " (SELECT 1 FROM attrs WHERE key = ?)", (new, old))  # fmt: skip
            self.conn.execute("UPDATE attrs SET key = ? WHERE key = ?", (new, old))

    def drop(self, key: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM attrs WHERE key = ?", (key,))

    def version_keys(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT key FROM attrs WHERE key LIKE 'v:%'")]
