"""Folders made locally first, through a real mount: ``mkdir`` answers without the drive,
the folder and what is written in it reach the drive later, in order, also across a
SIGKILL; a folder removed before the drive got it never reaches it; a rename that needs
the drive waits for it (or fails while the drive refuses, then works)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import wait_for

# the drive refuses to make folders (a 503 every time) until the rule is cleared
NO_FOLDERS = [{"op": "create", "match": {"type": "folder"}, "action": "status", "status": 503,
               "body": "Service Unavailable", "content_type": "text/plain"}]  # fmt: skip


def _data(i: int) -> bytes:
    return (f"file {i} ".encode() * (50 + 37 * i))[: 1000 + 997 * i]


def _status(m: Mounted) -> list[dict[str, Any]]:
    out = m.panfs("status", "--json", str(m.path), expect=None).stdout
    files: list[dict[str, Any]] = json.loads(out)["files"]
    return files


def test_mkdir_answers_while_the_drive_refuses_folders_and_all_lands_later(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    m = mount()
    reader = DriveReader(drive)
    drive.set_faults(NO_FOLDERS)
    os.makedirs(m.path / "a" / "b" / "c")  # would fail (EIO) if mkdir waited for the drive
    tree = {Path("a/one"): _data(1), Path("a/b/two"): _data(2), Path("a/b/c/three"): _data(3)}
    for rel, data in tree.items():
        (m.path / rel).write_bytes(data)
    os.mkdir(m.path / "a" / "empty")
    assert sorted(os.listdir(m.path / "a")) == ["b", "empty", "one"]
    for rel, data in tree.items():
        assert (m.path / rel).read_bytes() == data
    assert "a" not in reader.names("/")  # the drive has none of it yet
    waiting = {f["path"] for f in _status(m) if f["state"] == "pending"}
    assert {"/a/", "/a/b/", "/a/b/c/", "/a/empty/"} <= waiting
    drive.set_faults([])
    m.wait_idle()
    for rel, data in tree.items():
        assert reader.read("/" + str(rel)) == data
    assert reader.names("/a") == {"one": 1, "b": 1, "empty": 1}
    assert reader.names("/a/b") == {"two": 1, "c": 1}
    assert not any("panfs:" in name for name in reader.names("/"))
    m.check_logs(allow=("cannot make folder",))


def test_folders_made_locally_and_their_files_survive_a_sigkill(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    m = mount()
    reader = DriveReader(drive)
    drive.set_faults(NO_FOLDERS)
    os.makedirs(m.path / "x" / "y")
    (m.path / "x" / "y" / "f").write_bytes(_data(4))
    os.mkdir(m.path / "x" / "e")
    os.chmod(m.path / "x" / "e", 0o700)
    m.kill()
    drive.set_faults([])
    m.remount()
    assert sorted(os.listdir(m.path / "x")) == ["e", "y"]
    assert (m.path / "x" / "y" / "f").read_bytes() == _data(4)
    assert (os.stat(m.path / "x" / "e").st_mode & 0o777) == 0o700
    m.wait_idle()
    assert reader.read("/x/y/f") == _data(4)
    assert reader.names("/x") == {"y": 1, "e": 1}
    m.umount_wait()
    m.remount()  # now from the drive: the mode kept under the folder's drive id
    assert (os.stat(m.path / "x" / "e").st_mode & 0o777) == 0o700
    m.check_logs(allow=("cannot make folder",))


def test_a_folder_removed_before_the_drive_got_it_never_reaches_it(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    m = mount()
    reader = DriveReader(drive)
    drive.set_faults(NO_FOLDERS)
    os.makedirs(m.path / "gone" / "inner")
    (m.path / "gone" / "inner" / "f").write_bytes(b"never uploaded")
    os.unlink(m.path / "gone" / "inner" / "f")
    os.rmdir(m.path / "gone" / "inner")
    os.rmdir(m.path / "gone")
    os.mkdir(m.path / "kept")
    drive.set_faults([])
    m.wait_idle()
    assert reader.names("/") == {"kept": 1}
    with contextlib.closing(drive._store()) as store:  # trashed ones too
        names = [r[0] for r in store.execute("SELECT name FROM files")]
    assert names == ["kept"]
    m.check_logs(allow=("cannot make folder",))


def test_a_rename_that_needs_the_drive_waits_for_the_folder_or_fails_while_refused(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    m = mount()
    reader = DriveReader(drive)
    (m.path / "up").write_bytes(_data(5))
    m.wait_idle()  # "up" is a drive file now: moving it needs its new folder on the drive
    drive.set_faults(NO_FOLDERS)
    os.mkdir(m.path / "d")
    (m.path / "d" / "queued").write_bytes(_data(6))
    os.rename(m.path / "d" / "queued", m.path / "d" / "renamed")  # the journal alone
    for src, dst in (("up", "d/up"), ("d", "d2")):
        with pytest.raises(OSError, match="Input/output error") as e:
            os.rename(m.path / src, m.path / dst)
        assert e.value.errno == errno.EIO
    drive.set_faults([])
    os.rename(m.path / "up", m.path / "d" / "up")
    os.rename(m.path / "d", m.path / "d2")
    assert sorted(os.listdir(m.path / "d2")) == ["renamed", "up"]
    m.wait_idle()
    assert reader.read("/d2/up") == _data(5)
    assert reader.read("/d2/renamed") == _data(6)
    assert reader.names("/") == {"d2": 1}
    m.check_logs(allow=("cannot make folder", "HTTP 503"))


def test_a_folder_made_elsewhere_meanwhile_is_taken_as_the_one_made_here(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    m = mount(mount={"list_ttl": 3600})
    reader = DriveReader(drive)
    assert os.listdir(m.path) == []  # listed now: the folder made below is not seen
    other = reader._api("openFile/create", {"drive_id": reader.drive_id, "type": "folder",
                                            "parent_file_id": "root", "name": "shared",
                                            "check_name_mode": "refuse"})  # fmt: skip
    os.mkdir(m.path / "shared")
    (m.path / "shared" / "mine").write_bytes(_data(7))
    m.wait_idle()
    assert reader.names("/") == {"shared": 1}
    assert (reader.get("/shared") or {}).get("file_id") == other["file_id"]
    assert reader.read("/shared/mine") == _data(7)


def test_status_and_umount_wait_count_a_folder_not_yet_on_the_drive(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    m = mount()
    reader = DriveReader(drive)
    drive.set_faults(NO_FOLDERS)
    os.mkdir(m.path / "lonely")
    wait_for(lambda: any(f.get("error") for f in _status(m)), "the refused try in status")
    entry = next(f for f in _status(m) if f["path"] == "/lonely/")
    assert entry["state"] == "pending"
    assert "503" in entry["error"]
    drive.set_faults([])
    m.umount_wait()  # returns only once the folder is on the drive
    assert reader.names("/") == {"lonely": 1}


def test_a_kill_while_the_drive_made_a_folder_unanswered_leaves_one_folder(
    mount: Callable[..., Mounted], drive: DriveServer
) -> None:
    """The create went out and the drive made the folder; the daemon died before the
    answer (or before recording it): the next start asks again and takes the folder the
    name holds as this one, so the drive never gets two."""
    m = mount()
    reader = DriveReader(drive)
    drive.set_faults([{"op": "create", "match": {"type": "folder"}, "action": "answer_after",
                       "ms": 60_000}])  # fmt: skip
    os.mkdir(m.path / "once")
    (m.path / "once" / "f").write_bytes(_data(8))
    wait_for(lambda: reader.names("/") == {"once": 1}, "the drive to make the folder")
    m.kill()  # the answer never came
    drive.set_faults([])
    m.remount()
    assert os.listdir(m.path / "once") == ["f"]
    m.wait_idle()
    assert reader.names("/") == {"once": 1}
    assert reader.names("/once") == {"f": 1}
    assert reader.read("/once/f") == _data(8)
    with contextlib.closing(drive._store()) as store:
        folders = store.execute("SELECT count(*) FROM files WHERE type = 'folder'").fetchone()
    assert folders[0] == 1
