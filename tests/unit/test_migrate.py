"""Moving an earlier layout: rows rewritten, dirty files moved (renamed, or copied across
file systems), clean files left, idempotent when run again; and a landed version's file
changing folder (rename, or staying put across file systems)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from panfs import migrate
from panfs.cache import Cache
from panfs.metadata import open_db
from panfs.paths import Layout


def _old_layout(old: Path) -> dict[str, bytes]:
    data = old / "data"
    data.mkdir(parents=True)
    files = {name: os.urandom(1000 + i) for i, name in enumerate(("job", "open", "clean"))}
    for name, body in files.items():
        (data / name).write_bytes(body)
    (old / "token.json").write_text('{"seed": "s", "refresh_token": "r"}')
    db = open_db(old / "journal.db")
    now = time.time()
    with db:
        db.execute(
            "INSERT INTO jobs (source, size, mtime_ns, inode, fingerprint, parent_file_id, name,"
            " remote_path, state, created_at, updated_at) VALUES (?, 1, 1, 1, 'f', 'root', 'j',"
            " '/j', 'pending', ?, ?)",
            (str(data / "job"), now, now),
        )
        db.execute(
            "INSERT INTO open_versions VALUES (?, 'root', 'o', '/o', NULL, ?, NULL, NULL)",
            (str(data / "open"), now),
        )
        db.execute(
            "INSERT INTO clean VALUES ('fid', ?, 3, '[[0, 3]]', ?)", (str(data / "clean"), now)
        )
        db.execute("INSERT INTO attrs VALUES (?, 420, 0, 0, 0, 0)", ("v:" + str(data / "job"),))
    db.close()
    return files


def _state_on_another_fs(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system")
    return Path(tempfile.mkdtemp(dir=shm))


@pytest.mark.parametrize("other_fs", [False, True])
def test_rows_rewritten_dirty_moved_clean_left(tmp_path: Path, other_fs: bool) -> None:
    old = tmp_path / "cache"
    state = _state_on_another_fs(tmp_path) / "state" if other_fs else tmp_path / "state"
    try:
        files = _old_layout(old)
        layout = Layout(state, old, state / "panfs.log")
        assert migrate.pending(layout)
        assert migrate.journal_path(layout) == old / "journal.db"
        assert migrate.run(layout) == 2
        assert not migrate.pending(layout)
        assert migrate.journal_path(layout) == state / "journal.db"
        assert (state / "data" / "job").read_bytes() == files["job"]
        assert (state / "data" / "open").read_bytes() == files["open"]
        assert (old / "data" / "clean").read_bytes() == files["clean"]
        assert not (old / "data" / "job").exists()
        assert not (old / "journal.db").exists()
        assert (state / "token.json").read_text() == '{"seed": "s", "refresh_token": "r"}'
        conn = sqlite3.connect(state / "journal.db")
        assert conn.execute("SELECT source FROM jobs").fetchone()[0] == str(state / "data" / "job")
        assert conn.execute("SELECT cache_path FROM open_versions").fetchone()[0] == str(
            state / "data" / "open"
        )
        assert conn.execute("SELECT path FROM clean").fetchone()[0] == str(old / "data" / "clean")
        assert conn.execute("SELECT key FROM attrs").fetchone()[0] == "v:" + str(
            state / "data" / "job"
        )
        conn.close()
        assert migrate.run(layout) == 0  # done: nothing to do again
    finally:
        if other_fs:
            shutil.rmtree(state.parent, ignore_errors=True)


@pytest.mark.parametrize("other_fs", [False, True])
def test_landed_version_changes_folder(tmp_path: Path, other_fs: bool) -> None:
    state = _state_on_another_fs(tmp_path) if other_fs else tmp_path / "state"
    try:
        cache = Cache(state, 0, clean_root=tmp_path / "cache")
        path = cache.new_file(None)
        Path(path).write_bytes(b"landed")
        moved = cache.to_clean(path)
        if other_fs:
            assert moved == path  # no copy on the filesystem loop: it stays, named as clean
        else:
            assert moved == str(tmp_path / "cache" / "data" / os.path.basename(path))
            assert not os.path.exists(path)
            assert cache.to_clean(path) == moved  # moved before a crash: found at its new place
        assert Path(moved).read_bytes() == b"landed"
        clean = cache.new_clean_file()
        assert os.path.dirname(clean) == str(tmp_path / "cache" / "data")
    finally:
        if other_fs:
            shutil.rmtree(state, ignore_errors=True)
