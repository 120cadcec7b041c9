"""A closed version the state disk refuses to queue: it must never wait for the next start.

Two ways a close can fail to become a job, both at the edge of what we run (the disk):
the version's fsync fails (its bytes may not be what was written: it is queued at once
as interrupted, kept and never uploaded, and says why), or the journal refuses the row
(a full, read-only or failing state disk: the core's connection is made read-only, so
SQLite refuses every write as it would on such a disk; the version is tried again until
the journal takes it, later versions of the file wait behind it, and a writer of a newer
version is told at once instead of racing it).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio

from panfs import durability
from panfs.commands.shared import line
from panfs.overview import read as read_overview
from panfs.versions import REQUEUE_FIRST
from tests.model.adapters import CoreFS
from tests.model.test_core_windows import copies, core_in_w, poll, settle
from tests.support.drive import DriveReader, DriveServer


async def test_a_version_whose_fsync_fails_is_interrupted_at_once(
    tmp_path: Path, drive: DriveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 of ``a`` is on the drive; v2's fsync fails (EIO). v2 becomes an interrupted job
    at once, with the reason (status shows it, ``umount --wait`` stops waiting for it);
    the drive keeps v1; a re-copy then lands normally."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.write("a", b"1" * 1000)
        await settle(fs, drive)
        assert fs.rig is not None
        journal = fs.rig.journal
        real = durability.fsync_all

        def failing(fds: list[int]) -> dict[int, OSError]:
            return {fd: OSError(errno.EIO, os.strerror(errno.EIO)) for fd in fds}

        monkeypatch.setattr(durability, "fsync_all", failing)
        await fs.write("a", b"2" * 2000)
        await poll(lambda: bool(journal.jobs(("interrupted",))))
        monkeypatch.setattr(durability, "fsync_all", real)
        (job,) = journal.jobs(("interrupted",))
        assert job.remote_path == "/w/a"
        assert job.size == 2000
        assert job.error is not None
        assert "could not be made durable" in job.error
        with trio.fail_after(60):  # a hang guard: nothing is left to wait for
            await fs.wait_idle()
        db = journal.conn.execute("PRAGMA database_list").fetchone()[2]
        ov = read_overview(Path(db))  # what panfs status reads
        (f,) = [f for f in ov.files if f.path == "/w/a"]
        assert f.state == "interrupted"
        assert "kept, not uploaded" in line(ov, f)
        assert reader.read("/w/a") == b"1" * 1000  # never the bytes that may be wrong
        await fs.write("a", b"3" * 3000)  # copied again: lands
        await settle(fs, drive)
    assert copies(reader, "/w", "a") == [3000]


async def test_a_version_the_journal_refuses_is_queued_once_it_takes_it(
    tmp_path: Path, drive: DriveServer
) -> None:
    """The journal refuses v1 of ``a`` (and keeps refusing for a while): v1 is retried, not
    left for the next start; a writer that truncates ``a`` meanwhile is told at once (its
    version would race the refused one); once the journal takes rows again, v1 is queued
    and uploaded without a restart, and a newer version lands after it."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        assert fs.rig is not None
        journal = fs.rig.journal
        fh = await fs._open_for_write("a", b"1" * 1000)
        await fs._call(fs.core.flush(fh))  # close() returned: its size and mtime recorded
        journal.conn.execute("PRAGMA query_only = ON")  # the state disk refuses writes now
        await fs._call(fs.core.release(fh, grouped=True))  # the close queue meets the refusal
        await trio.sleep(REQUEUE_FIRST * 2)  # refused, then retried: refused again
        assert not journal.jobs()
        assert fs.core.versions.closing
        with pytest.raises(OSError, match="state database") as e:
            await fs.write("a", b"2" * 2000)  # would make v2 while v1 is not a job
        assert e.value.errno == errno.EIO
        assert await fs.read("a") == b"1" * 1000  # nothing the refused write did shows
        journal.conn.execute("PRAGMA query_only = OFF")  # the disk takes writes again
        with trio.fail_after(60):  # a hang guard: the retries back off to seconds
            await fs.wait_idle()
        assert copies(reader, "/w", "a") == [1000]
        await fs.write("a", b"3" * 3000)
        await settle(fs, drive)
    assert copies(reader, "/w", "a") == [3000]
    assert reader.read("/w/a") == b"3" * 3000


async def _close_together(fs: CoreFS, names: str, refuse: bool = False) -> None:
    """Write each of ``names`` and close them in the same moment: their versions are queued
    in one group (``Versions._publish_group``), one transaction for all. ``refuse``: the
    state disk refuses writes from the moment their close() returned."""
    fhs = [await fs._open_for_write(n, n.encode() * 1000) for n in names]
    for fh in fhs:
        await fs._call(fs.core.flush(fh))  # close() returned: its size and mtime recorded
    if refuse:
        assert fs.rig is not None
        fs.rig.journal.conn.execute("PRAGMA query_only = ON")
    for fh in fhs:
        await fs._call(fs.core.release(fh, grouped=True))


async def test_versions_closed_together_are_queued_together_and_one_failing_fails_alone(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``a``, ``b`` and ``c`` close in the same moment and are queued in one transaction.
    ``b``'s queueing fails half-way (its job row written, then its open-version row will
    not go): ``b`` alone is undone and left for the next start, ``a`` and ``c`` are
    queued; after a restart ``b`` is queued once, and each file lands once."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        assert fs.rig is not None
        journal = fs.rig.journal
        journal.conn.execute(
            "CREATE TEMP TRIGGER refuse_b BEFORE DELETE ON open_versions WHEN OLD.name = 'b'"
            " BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
        )
        await _close_together(fs, "abc")
        await poll(lambda: not fs.core.versions.closing)
        assert sorted(j.name for j in journal.jobs()) == ["a", "c"]  # none of b's writes
        assert [v.name for v in fs.core.versions.open_versions.all()] == ["b"]
        journal.conn.execute("DROP TRIGGER refuse_b")
        await fs.remount()  # the next start queues b
        await settle(fs, drive)
    for n in "abc":
        assert copies(reader, "/w", n) == [1000]
        assert reader.read(f"/w/{n}") == n.encode() * 1000


async def test_versions_closed_together_that_the_journal_refuses_are_all_queued_later(
    tmp_path: Path, drive: DriveServer
) -> None:
    """The state disk refuses writes while ``a``, ``b`` and ``c`` close together: none is
    queued (nothing half-written), each is retried, and once the disk takes writes again
    all three are queued without a restart and land once."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        assert fs.rig is not None
        journal = fs.rig.journal
        await _close_together(fs, "abc", refuse=True)
        await trio.sleep(REQUEUE_FIRST * 2)  # refused, then retried: refused again
        assert not journal.jobs()
        assert fs.core.versions.closing
        journal.conn.execute("PRAGMA query_only = OFF")  # the disk takes writes again
        with trio.fail_after(60):  # a hang guard: the retries back off to seconds
            await fs.wait_idle()
    for n in "abc":
        assert copies(reader, "/w", n) == [1000]
