"""``folders.Folders`` with a drive that is a function: folders are made parents first, in the
order they were made; the drive id takes the local one's place in every row in one step
(queued and open versions, folders inside, attributes), and uploads skip versions whose
folder is local until then; a folder removed before it was made is never made; a failed
try is retried, and raised to whoever waits for the folder."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from panfs import journal as jr
from panfs.attrs import Attrs, AttrStore, drive_key
from panfs.errors import RemoteError, TransientError
from panfs.folders import Folders, LocalFolder, is_local
from panfs.metadata import open_db
from panfs.pending import OpenVersions


class Drive:
    """Makes folders when asked (or refuses while ``refuse`` is set), numbering them."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []
        self.refuse = False
        self.asked = 0

    async def make(self, parent_id: str, name: str) -> str:
        self.asked += 1
        await trio.lowlevel.checkpoint()
        if self.refuse:
            raise TransientError("no folders today", status=503)
        assert not is_local(parent_id), "a folder was made before its parent"
        self.made.append((parent_id, name))
        return f"D{len(self.made)}"


@contextlib.asynccontextmanager
async def _running(
    tmp_path: Path, drive: Drive
) -> AsyncIterator[tuple[Folders, jr.Journal, OpenVersions, sqlite3.Connection]]:
    db = open_db(tmp_path / "j.db")
    try:
        journal, versions = jr.Journal(db), OpenVersions(db)
        folders = Folders(db, journal, versions, AttrStore(db), max_backoff=0.05)
        async with trio.open_nursery() as nursery:
            await nursery.start(folders.run, drive.make)
            yield folders, journal, versions, db
            nursery.cancel_scope.cancel()
    finally:
        db.close()


async def _idle(folders: Folders) -> None:
    with trio.fail_after(10):  # a hang guard, not a speed limit
        for row in folders.all():
            await folders.made(row.local_id)


async def test_parents_first_and_every_row_takes_the_drive_id(tmp_path: Path) -> None:
    drive = Drive()
    seen: list[tuple[str, str]] = []
    async with _running(tmp_path, drive) as (folders, journal, versions, db):
        folders.on_made.append(lambda row, file_id: seen.append((row.local_id, file_id)))
        drive.refuse = True  # nothing is made while the rows are written
        a = folders.add("root", "a", "/a")
        b = folders.add(a, "b", "/a/b")
        c = folders.add("root", "c", "/c")
        assert folders.children(a) == {"b": b}
        src = tmp_path / "f"
        src.write_bytes(b"x")
        job, _ = journal.add(source=str(src), parent_file_id=b, name="f", remote_path="/a/b/f")
        versions.add(cache_path=str(tmp_path / "g"), parent_file_id=b, name="g",
                     remote_path="/a/b/g", replaces_file_id=None)  # fmt: skip
        AttrStore(db).put(drive_key(b), Attrs(0o700, 1, 2, 3, 4))
        assert journal.due(1e12, (), 10) == []  # its folder is not on the drive yet
        assert journal.busy()
        drive.refuse = False
        await _idle(folders)
        assert drive.made == [("root", "a"), ("D1", "b"), ("root", "c")]
        assert [s[0] for s in seen] == [a, b, c]
        ids = dict(seen)
        assert journal.due(1e12, (), 10) == [job.id]
        assert journal.get(job.id).parent_file_id == ids[b]  # type: ignore[union-attr]
        assert versions.get(str(tmp_path / "g")).parent_file_id == ids[b]  # type: ignore[union-attr]
        assert OpenVersions(db).get(str(tmp_path / "g")).parent_file_id == ids[b]  # type: ignore[union-attr]
        assert AttrStore(db).get(drive_key(ids[b])) == Attrs(0o700, 1, 2, 3, 4)
        assert AttrStore(db).get(drive_key(b)) is None
        assert db.execute("SELECT count(*) FROM folders").fetchone()[0] == 0


async def test_rows_outlive_a_restart_and_are_made_then(tmp_path: Path) -> None:
    drive = Drive()
    drive.refuse = True
    async with _running(tmp_path, drive) as (folders, *_):
        a = folders.add("root", "a", "/a")
        folders.add(a, "b", "/a/b")
    async with _running(tmp_path, drive) as (folders, *_):
        assert [(f.name, f.parent_id) for f in folders.all()] == [("a", "root"), ("b", a)]
        drive.refuse = False
        await _idle(folders)
    assert drive.made == [("root", "a"), ("D1", "b")]


async def test_a_folder_dropped_before_it_was_made_never_is(tmp_path: Path) -> None:
    drive = Drive()
    drive.refuse = True
    async with _running(tmp_path, drive) as (folders, _, _, db):
        gone = folders.add("root", "gone", "/gone")
        AttrStore(db).put(drive_key(gone), Attrs(0o700, 1, 2, 3, 4))
        folders.add("root", "kept", "/kept")
        assert folders.drop(gone)
        assert AttrStore(db).get(drive_key(gone)) is None
        await folders.made(gone)  # removed: nothing to wait for
        drive.refuse = False
        await _idle(folders)
    assert drive.made == [("root", "kept")]


async def test_a_waiter_gets_the_failure_at_once_and_the_folder_is_made_later(
    tmp_path: Path,
) -> None:
    drive = Drive()
    drive.refuse = True
    async with _running(tmp_path, drive) as (folders, *_):
        a = folders.add("root", "a", "/a")
        b = folders.add(a, "b", "/a/b")
        with trio.fail_after(10), pytest.raises(RemoteError, match="no folders today"):
            await folders.made(b)  # its parent's try failed: so does the wait
        row = folders.get(a)
        assert isinstance(row, LocalFolder)
        assert row.error is not None
        assert "503" in row.error
        drive.refuse = False
        with trio.fail_after(10):
            await folders.made(b)
        assert folders.all() == []
    assert drive.made == [("root", "a"), ("D1", "b")]


async def test_writing_defers_the_making_unless_somebody_waits(tmp_path: Path) -> None:
    drive = Drive()
    db = open_db(tmp_path / "j.db")
    try:
        journal, versions = jr.Journal(db), OpenVersions(db)
        folders = Folders(db, journal, versions, AttrStore(db))
        async with trio.open_nursery() as nursery:
            await nursery.start(folders.run, drive.make, lambda: 0.05)  # always writing
            a = folders.add("root", "a", "/a")
            await trio.sleep(0.3)
            assert drive.asked == 0  # writes go first
            with trio.fail_after(10):
                await folders.made(a)  # a wait does not defer
            assert drive.made == [("root", "a")]
            nursery.cancel_scope.cancel()
    finally:
        db.close()
