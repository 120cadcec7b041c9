"""The state database's transactions (``panfs.metadata``) beside another process's writes."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from panfs.metadata import open_db, transaction

ROW = ("k", 0o644, 0, 0, 1, 1)


def test_a_transaction_that_reads_first_is_not_refused_by_another_writer(tmp_path: Path) -> None:
    """A block that reads, then writes (``Journal.add`` queueing a closed version) while
    another connection writes (``umount --wait`` clearing write-back delays): the other
    writer waits for the block, never the reverse. With a deferred BEGIN the other one got
    in between the read and the write, and the block was refused with "database is locked"
    at once: the version stayed unqueued until the next start, and ``umount --wait`` hung."""
    path = tmp_path / "journal.db"
    mine = open_db(path)
    other = sqlite3.connect(path, timeout=0.1)
    try:
        with transaction(mine):
            mine.execute("SELECT count(*) FROM attrs").fetchone()
            # the other one waits for ours (its own timeout is short: refused)
            with contextlib.suppress(sqlite3.OperationalError), other:
                other.execute("INSERT INTO attrs VALUES ('o', 0, 0, 0, 0, 0)")
            mine.execute("INSERT INTO attrs VALUES (?, ?, ?, ?, ?, ?)", ROW)
        keys = {r[0] for r in mine.execute("SELECT key FROM attrs")}
        assert "k" in keys
    finally:
        other.close()
        mine.close()
