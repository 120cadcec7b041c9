"""One SIGKILL in each crash window of ``docs/crash-windows.md``, at the exact moment.

``PANFS_CRASH_AT=NAME[:N]`` makes the process kill itself (a real SIGKILL) the N-th
time it reaches the named point; the next run, without it, must converge: the file
on the drive equals the source, nothing is duplicated, and the server's counters
bound what was sent twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import require_fuse
from tests.uploader.conftest import MiB, Uploads, make_file

pytestmark = pytest.mark.crash

SIZE = 5 * MiB + 12345


def _crash(u: Uploads, src: Path, point: str) -> None:
    r = u.run(src, "/up", check=False, env={"PANFS_CRASH_AT": point})
    assert r.returncode == -signal.SIGKILL, f"{point} was not reached: {r.returncode}"


def _names(drive: DriveServer, folder: str) -> list[str]:
    return sorted(i["name"] for i in DriveReader(drive).list(folder))


@pytest.mark.parametrize(
    ("point", "resent", "completes"),
    [
        ("after_create", 0, 1),  # session on the server, not in the journal
        ("after_part_ack:3", 0, 1),  # part 3 stored, its ack not journaled
        ("before_complete", 0, 1),
        ("after_complete", 0, 1),  # complete landed, "done" not journaled
        ("after_move", 0, 1),
    ],
)
def test_upload_killed_in_a_window_converges(
    drive: DriveServer, tmp_path: Path, point: str, resent: int, completes: int
) -> None:
    u = Uploads(tmp_path, drive)
    src = make_file(tmp_path / "f.bin", SIZE)
    _crash(u, src, point)
    u.run(src, "/up")
    assert DriveReader(drive).read("/up/f.bin") == src.read_bytes()
    assert _names(drive, "/up") == ["f.bin"]  # no orphan shows, nothing renamed aside
    stats = drive.stats()
    assert stats["part_bytes_received"] - SIZE <= resent
    assert stats["requests"].get("complete", 0) == completes


def test_upload_killed_after_trashing_the_replaced_version(
    drive: DriveServer, tmp_path: Path
) -> None:
    u = Uploads(tmp_path, drive)
    src = make_file(tmp_path / "f.bin", SIZE)
    u.run(src, "/up")
    src.write_bytes(os.urandom(SIZE))  # a new version of the same file
    _crash(u, src, "after_trash_replaced")
    u.run(src, "/up")
    assert DriveReader(drive).read("/up/f.bin") == src.read_bytes()
    assert _names(drive, "/up") == ["f.bin"]
    assert drive.stats()["part_bytes_received"] == 2 * SIZE


def test_killed_between_token_answer_and_save_names_the_fix(
    drive: DriveServer, tmp_path: Path
) -> None:
    """The one window with no automatic recovery: the drive rotated the refresh token and
    the new one was never saved. The next run says what to do, in one line."""
    u = Uploads(tmp_path, drive)
    src = make_file(tmp_path / "f.bin", 1000)
    _crash(u, src, "after_token_answer")
    r = u.run(src, "/up", check=False)
    assert r.returncode == 2
    err = u.log.read_text()
    assert "put a fresh remote.refresh_token in the config" in err
    assert "Traceback" not in err


@pytest.mark.fuse
def test_mount_killed_between_queueing_and_superseding(drive: DriveServer, tmp_path: Path) -> None:
    """Version 2 of a file was queued, but the daemon died before it retired version 1
    and its open-version row: after the remount only version 2 lands, once."""
    require_fuse()
    drive.set_faults([{"op": "put_part", "action": "delay", "ms": 400}])  # v1 still uploading
    m = Mounted(tmp_path / "m", drive, env={"PANFS_CRASH_AT": "publish_after_journal:2"})
    try:
        v1, v2 = os.urandom(3 * MiB), os.urandom(2 * MiB + 7)
        (m.path / "f.bin").write_bytes(v1)
        # the second close kills the daemon; the writer may or may not see an error
        (tmp_path / "v2").write_bytes(v2)
        subprocess.run(["cp", str(tmp_path / "v2"), str(m.path / "f.bin")], capture_output=True)
        assert m.proc is not None
        m.proc.wait(10)
        assert m.proc.returncode == -signal.SIGKILL
        m.kill()
        drive.set_faults([])
        m.env = {}
        m.remount()
        m.wait_idle()
        assert DriveReader(drive).read("/f.bin") == v2
        assert _names(drive, "/") == ["f.bin"]
    finally:
        m.close()


@pytest.mark.fuse
def test_mount_killed_while_queueing_files_closed_together(
    drive: DriveServer, tmp_path: Path
) -> None:
    """Small files closed in one moment are queued in one transaction; the daemon dies in
    the middle of queueing them (the 5th version's job row written, the transaction not
    committed): after the remount every file whose close() returned lands once, with its
    bytes, and nothing else does."""
    require_fuse()
    m = Mounted(tmp_path / "m", drive, env={"PANFS_CRASH_AT": "publish_after_journal:5"})
    try:
        closed: dict[str, bytes] = {}
        for i in range(20):
            data = os.urandom(1000 + 97 * i)
            try:
                (m.path / f"f{i:02d}").write_bytes(data)
            except OSError:
                break  # the daemon is gone: this file's close() did not return
            closed[f"f{i:02d}"] = data
        assert m.proc is not None
        m.proc.wait(10)
        assert m.proc.returncode == -signal.SIGKILL
        assert len(closed) >= 5  # five were queued (in part) before the kill
        m.kill()
        m.env = {}
        m.remount()
        m.wait_idle()
        reader = DriveReader(drive)
        assert _names(drive, "/") == sorted(closed)
        for name, data in closed.items():
            assert reader.read(f"/{name}") == data
    finally:
        m.close()


@pytest.mark.fuse
def test_mount_killed_after_close_before_release_queues_the_file(
    drive: DriveServer, tmp_path: Path
) -> None:
    """cp returned (its close() reached the daemon) but the RELEASE that follows was never
    handled: the version was whole, so the next mount uploads it instead of calling it
    interrupted. A writer that never closed stays interrupted (test_mount_crash.py)."""
    require_fuse()
    m = Mounted(tmp_path / "m", drive, env={"PANFS_CRASH_AT": "release_before_publish"})
    try:
        data = os.urandom(3 * MiB + 3)
        (tmp_path / "src").write_bytes(data)
        r = subprocess.run(["cp", str(tmp_path / "src"), str(m.path / "f.bin")])
        assert r.returncode == 0
        assert m.proc is not None
        m.proc.wait(10)
        assert m.proc.returncode == -signal.SIGKILL
        m.kill()
        m.env = {}
        m.remount()
        m.wait_idle()
        assert DriveReader(drive).read("/f.bin") == data
        assert "interrupted" not in (m.cache_dir / "panfs.log").read_text()
    finally:
        m.close()
