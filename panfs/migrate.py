"""Moving the layout of earlier versions (everything under the cache dir) to the state dir.

Owns: the one-time move of the journal, the token file and the data not yet on the
drive from ``CACHE_DIR`` to ``STATE_DIR``, leaving only clean bytes in the cache dir.
It is atomic and resumable, so a kill at any moment loses nothing:

1. ``STATE_DIR/.migrating-from`` is written (temp + fsync + rename): a migration is
   under way, from that folder.
2. The journal is copied with SQLite's backup API to a temp file, the paths of dirty
   files in it are rewritten to ``STATE_DIR/data``, and the temp file is renamed to
   ``STATE_DIR/journal.db`` (the commit point: before it the old journal is the truth,
   after it the new one).
3. Every dirty file is moved (rename, or copy + fsync + rename + unlink across
   file systems; a file found at both places was moved and only the old one goes).
4. The token file is copied, then the old journal, token and lock files are removed.
5. The marker goes.

Each step checks what is already done, so running it again after a kill finishes it.
Must not: run beside a daemon (it holds both folders' locks while it works).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from panfs import crashpoint, lock
from panfs.atomic import fsync_dir, write_atomic
from panfs.errors import LocalError
from panfs.paths import Layout

log = logging.getLogger(__name__)

MARKER = ".migrating-from"
_MOVED_FILES = ("token.json",)
_OLD_FILES = ("journal.db", "journal.db-wal", "journal.db-shm", "token.json", "daemon.lock")


def pending(layout: Layout) -> bool:
    """Is there an old layout to move (or a move to finish)?"""
    if not layout.split:
        return False
    if (layout.state_dir / MARKER).exists():
        return True
    return (layout.cache_dir / "journal.db").exists() and not layout.journal.exists()


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except PermissionError:
        raise LocalError(
            f"cannot read the state dir {path.parent}: permission denied; run this as the user "
            "that mounted (or root)"
        ) from None


def journal_path(layout: Layout) -> Path:
    """The journal that holds the truth now (the old one until the migration commits)."""
    if layout.split and not _exists(layout.journal):
        old = layout.cache_dir / "journal.db"
        if _exists(old):
            return old
    return layout.journal


def _copy_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    shutil.copymode(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def run(layout: Layout) -> int:
    """Finish (or do) the migration; returns how many dirty files were moved."""
    if not pending(layout):
        return 0
    state, old = layout.state_dir, layout.cache_dir
    state.mkdir(parents=True, exist_ok=True)
    marker = state / MARKER
    if not marker.exists():
        write_atomic(marker, str(old))
    crashpoint.reach("migrate_after_marker")
    with lock.acquire(old, "(moving state to " + str(state) + ")"), lock.acquire(state, "(moving)"):
        old_data, new_data = old / "data", state / "data"
        new_data.mkdir(exist_ok=True)
        if not layout.journal.exists():
            _copy_journal(old / "journal.db", layout.journal, old_data, new_data)
        crashpoint.reach("migrate_after_journal")
        moved = _move_dirty(layout.journal, old_data, new_data)
        for name in _MOVED_FILES:
            if (old / name).exists() and not (state / name).exists():
                _copy_file(old / name, state / name)
        for name in _OLD_FILES:
            if name != "daemon.lock":
                with contextlib.suppress(FileNotFoundError):
                    (old / name).unlink()
        fsync_dir(old)
    with contextlib.suppress(FileNotFoundError):
        (old / "daemon.lock").unlink()
    marker.unlink()
    fsync_dir(state)
    log.info("moved the journal, tokens and %d files not yet uploaded from %s to %s",
             moved, old, state)  # fmt: skip
    return moved


def _copy_journal(src: Path, dst: Path, old_data: Path, new_data: Path) -> None:
    tmp = dst.with_name(dst.name + ".migrating")
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(tmp) + suffix)
    source = sqlite3.connect(src, timeout=30)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)
        old_prefix, new_prefix = f"{old_data}/", f"{new_data}/"
        n = len(old_prefix)
        clean = {r[0] for r in target.execute("SELECT path FROM clean")}
        with target:
            for table, col, pre in (
                ("jobs", "source", ""),
                ("open_versions", "cache_path", ""),
                ("attrs", "key", "v:"),
            ):
                rows = target.execute(
                    f"SELECT {col} FROM {table} WHERE substr({col}, 1, ?) = ?",
                    (len(pre) + n, pre + old_prefix),
                ).fetchall()
                for (value,) in rows:
                    path = value[len(pre) :]
                    if table == "attrs" and path in clean:
                        continue
                    target.execute(
                        f"UPDATE {table} SET {col} = ? WHERE {col} = ?",
                        (pre + new_prefix + path[n:], value),
                    )
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    crashpoint.reach("migrate_before_commit")
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def _move_dirty(journal: Path, old_data: Path, new_data: Path) -> int:
    conn = sqlite3.connect(journal, timeout=30)
    try:
        clean = {r[0] for r in conn.execute("SELECT path FROM clean")}
    finally:
        conn.close()
    if not old_data.is_dir():
        return 0
    moved = 0
    for entry in sorted(os.scandir(old_data), key=lambda e: e.name):
        if not entry.is_file() or entry.path in clean or entry.name.startswith("."):
            continue
        target = new_data / entry.name
        if target.exists():
            os.unlink(entry.path)  # copied and renamed before a kill: only the old one goes
            continue
        crashpoint.reach("migrate_file")
        try:
            os.rename(entry.path, target)
        except OSError as e:
            if e.errno != errno.EXDEV:  # another file system: copy it
                raise
            _copy_file(Path(entry.path), target)
            os.unlink(entry.path)
        moved += 1
    fsync_dir(new_data)
    fsync_dir(old_data)
    return moved
