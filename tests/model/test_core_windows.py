"""Windows between a landing and a crash that the random sequences met, held open on
purpose: the server delays one request long enough for the other step to happen inside
it, then the core is dropped like a SIGKILL. The drive itself is checked afterwards (one
copy per name, the last closed bytes). Each runs against the default server and the
strict profile (every reading the protocol leaves open taken the hard way)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from panfs.inodes import ROOT_INO
from tests.model.adapters import CoreFS
from tests.support.drive import DriveReader, DriveServer

NO_DELAY = {"upload": {"delay": 0.0}}


@pytest.fixture(params=[(), ("--profile", "strict")], ids=["default", "strict"])
def drive(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DriveServer]:
    server = DriveServer(tmp_path / "drive", *request.param)
    try:
        yield server
    finally:
        server.close()


def copies(reader: DriveReader, folder: str, name: str) -> list[int]:
    return [i["size"] for i in reader.list(folder) if i["name"] == name]


@contextlib.asynccontextmanager
async def core_in_w(
    drive: DriveServer,
    tmp_path: Path,
    **sections: dict[str, object],
) -> AsyncIterator[CoreFS]:
    """A core with no write-back delay (and the config ``sections`` given) working in a
    fresh drive folder ``/w``; stopped, and the server's faults cleared, however the test
    ends."""
    fs = CoreFS(drive, tmp_path / "c", "w", **{**NO_DELAY, **sections})
    await fs.start()
    try:
        await fs.core.mkdir(ROOT_INO, "w", 0o755, os.getuid(), os.getgid())
        yield fs
    finally:
        drive.set_faults([])
        await fs.stop()


async def settle(fs: CoreFS, drive: DriveServer) -> None:
    """Faults off, then every upload and cleanup done (what ``umount --wait`` waits for)."""
    drive.set_faults([])
    with trio.fail_after(120):  # a hang guard, not a speed limit
        await fs.wait_idle()


# the landing's steps run unawaited when the core is dropped (a SIGKILL in process)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_version_landing_while_a_newer_one_is_open_then_a_crash_leaves_one_copy(
    tmp_path: Path, drive: DriveServer
) -> None:
    """v2 lands while v3 is open for writing; the daemon dies after v2 landed (its trash of
    v1 still in flight) and after v3's close() returned, before its release queued it.
    Recovery queues v3 from its open row: it must replace v2 (what the name held when v2
    landed), not v1 (what it held when v3 was opened), or v2 stays beside it."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.write("y", b"1" * 1000)
        await fs.wait_idle()
        drive.set_faults(
            [
                {"op": "complete", "action": "delay", "ms": 500, "probability": 1.0},
                {"op": "trash", "action": "delay", "ms": 3000, "probability": 1.0},
            ]
        )
        await fs.write("y", b"2" * 2000)  # queued
        assert fs.rig is not None
        journal = fs.rig.journal

        def v2(landed: bool) -> bool:
            return any(
                j.file_id and (j.landed_at is not None or not landed)
                for j in journal.jobs(("uploading",))
            )

        await poll(lambda: v2(landed=False))  # its session is on the drive
        fh = await fs._open_for_write("y", b"3" * 3000)  # O_TRUNC, written, still open
        await fs._call(fs.core.flush(fh))  # close() returned: v3 must not be lost
        await poll(lambda: v2(landed=True))  # v2 is the name now; v1's trash in flight
        await fs.kill()  # before RELEASE: recovery queues v3 from its open row
        await settle(fs, drive)
    assert copies(reader, "/w", "y") == [3000]
    assert reader.read("/w/y") == b"3" * 3000


async def poll(pred: Callable[[], bool], thread: bool = False) -> None:
    """Until ``pred()`` (in a worker thread if it asks the drive server, another process)."""
    with trio.fail_after(30):  # a hang guard, not a speed limit
        while not (await trio.to_thread.run_sync(pred) if thread else pred()):  # noqa: ASYNC110
            await trio.sleep(0.005)  # (the state polled has no event to wait on)


async def lose_an_empty_create(fs: CoreFS, drive: DriveServer, held_ms: int) -> None:
    """An empty ``a`` is closed; its create (it makes the file at once) is held by the drive
    for ``held_ms`` and the core is dropped like a SIGKILL meanwhile: its answer is lost."""
    drive.set_faults([{"op": "create", "action": "delay", "ms": held_ms, "times": 1}])
    await fs.write("a", b"")
    assert fs.rig is not None
    await poll(lambda: any(j.rapid_at for j in fs.rig.journal.jobs(("uploading",))))
    await fs.kill()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("superseded", [True, False], ids=["superseded", "renamed"])
async def test_empty_create_in_flight_at_a_kill_after_a_rename(
    tmp_path: Path, drive: DriveServer, superseded: bool
) -> None:
    """An empty file's create (it makes the file at once) is in flight when the file is
    renamed away (``superseded``: after a newer version superseded it) and the daemon dies;
    the drive makes the file, the kill loses the answer.
    Superseded: the version must survive the restart until the reaper has looked for that
    file and trashed it. Renamed: the upload finds the file under the old name and adopts
    it, recorded where it stands, so its post-steps move it on. Either way the drive ends
    with the renamed file only."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        # the drive makes the file at once but answers late: the kill loses the answer
        drive.set_faults([{"op": "create", "action": "answer_after", "ms": 1500}])
        await fs.write("a", b"")
        assert fs.rig is not None
        journal = fs.rig.journal
        await poll(lambda: any(j.rapid_at for j in journal.jobs(("pending", "uploading"))))
        if superseded:
            await fs.append("a", b"5" * 50)  # supersedes it (its create may make the file)
        await fs.rename("a", "x")
        # made on the drive, its answer not sent yet
        await poll(lambda: copies(reader, "/w", "a") == [0], thread=True)
        await fs.kill()  # the create's answer is lost
        await settle(fs, drive)
        assert await fs.listdir("") == ["x"]
    size = 50 if superseded else 0
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("x", size)]


async def test_rename_over_a_name_whose_rapid_create_is_in_flight(
    tmp_path: Path, drive: DriveServer
) -> None:
    """An empty file's create (it makes the file at once) is answered late; meanwhile a file
    is renamed over that name. The drive already holds the new empty file there: the
    rename must not fail with EEXIST, and the empty version, abandoned, must not stay."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.mkdir("b")
        await fs.write("a", b"7" * 7)
        await fs.wait_idle()
        drive.set_faults([{"op": "create", "action": "answer_after", "ms": 1500}])
        await fs.write("b/a", b"")
        await poll(lambda: copies(reader, "/w/b", "a") == [0], thread=True)  # made, unanswered
        await fs.rename("a", "b/a")
        await settle(fs, drive)
        assert await fs.read("b/a") == b"7" * 7
    assert [(i["name"], i["size"]) for i in reader.list("/w/b")] == [("a", 7)]
    assert "a" not in [i["name"] for i in reader.list("/w")]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_listing_answered_across_a_landing_keeps_the_landed_name(
    tmp_path: Path, drive: DriveServer
) -> None:
    """After a restart no node of ``x`` is in the table; a listing of its folder is taken
    by the drive before x's upload lands and answered after it (its job already gone from
    the journal): the listing is stale, and x must not vanish from it."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        folder = await trio.to_thread.run_sync(reader.get, "/w")
        assert folder is not None
        held = {"op": "put_part", "action": "delay", "ms": 1500}
        drive.set_faults([held])
        await fs.write("x", b"x" * 9000)
        await fs.kill()  # x's upload resumes after the restart, its part held 1.5 s
        late = {"parent_file_id": folder["file_id"]}
        drive.set_faults(
            [held, {"op": "list", "action": "answer_after", "ms": 3000, "match": late}]
        )
        assert await fs.listdir("") == ["x"]
        await settle(fs, drive)
    assert copies(reader, "/w", "x") == [9000]


async def test_rename_over_a_name_held_only_by_a_doomed_file(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``y`` is removed while the drive refuses every trash: its file stays on the drive,
    doomed and hidden, until a trash goes through. A file renamed to ``y`` meanwhile must
    not fail with EEXIST (the name is ours to share), and ``y`` ends as that file alone."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.write("y", b"1" * 1000)
        await fs.write("x", b"2" * 2000)
        await settle(fs, drive)
        drive.set_faults([{"op": "trash", "action": "status", "status": 500, "body": "busy"}])
        await fs.unlink("y")
        assert copies(reader, "/w", "y") == [1000]  # still there: the trash was refused
        await fs.rename("x", "y")
        assert await fs.read("y") == b"2" * 2000
        await settle(fs, drive)
    assert copies(reader, "/w", "y") == [2000]
    assert copies(reader, "/w", "x") == []


async def test_a_version_closed_right_before_a_rename_lands_under_the_new_name(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``b`` is truncated and closed (its release returns at once: the version waits to be
    queued), then renamed to ``c`` while the drive holds the rename a while. The version
    must be queued under ``c``, not under ``b`` mid-rename (it would land there at once,
    an empty file, past the rename's locks): ``b`` never shows again and the drive ends
    with ``c`` alone, empty."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.write("b", b"1" * 1000)
        await settle(fs, drive)
        drive.set_faults([{"op": op, "action": "delay", "ms": 1000} for op in ("update", "move")])
        await fs.write("b", b"")  # released: queued by the close queue, soon
        await fs.rename("b", "c")
        assert await fs.listdir("") == ["c"]
        assert await fs.read("c") == b""
        await settle(fs, drive)
        assert await fs.listdir("") == ["c"]
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("c", 0)]


async def test_a_version_closed_right_before_an_unlink_never_lands(
    tmp_path: Path, drive: DriveServer
) -> None:
    """As above with ``rm b`` (the drive holds the trash of the old file a while): the
    version closed right before must not be queued mid-unlink and land as ``b``."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.write("b", b"1" * 1000)
        await settle(fs, drive)
        drive.set_faults([{"op": "trash", "action": "delay", "ms": 1000}])
        await fs.write("b", b"")
        await fs.unlink("b")
        assert await fs.listdir("") == []
        await settle(fs, drive)
        assert await fs.listdir("") == []
    assert reader.list("/w") == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_newer_version_landing_during_an_older_ones_move_retires_both_files(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``y`` (v1 on the drive) gets v2, and is renamed to ``b`` while v2 uploads; v2 lands
    under ``y`` and its post-steps move it to ``b`` (the drive holds that move a while).
    Meanwhile v3 of ``b`` lands and retires v2's file. v2 must end there (not fail and come
    back as a failed version of ``b`` with its old bytes), and v1, which only v2's steps
    were to retire, must go too: the drive ends with ``b`` = v3 alone."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await fs.write("y", b"1" * 1000)
        await settle(fs, drive)
        assert fs.rig is not None
        journal = fs.rig.journal
        drive.set_faults([{"op": "update", "action": "delay", "ms": 1500}])
        await fs.write("y", b"2" * 2000)
        await poll(lambda: any(j.file_id for j in journal.jobs(("uploading",))))
        await fs.rename("y", "b")  # v1 moved to b (held); v2 retargeted to b
        await poll(lambda: any(j.landed_at for j in journal.jobs(("uploading",))))
        await fs.write("b", b"3" * 3000)  # lands while v2's move to b is held
        await settle(fs, drive)
        assert await fs.listdir("") == ["b"]
        assert await fs.read("b") == b"3" * 3000
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("b", 3000)]
    assert reader.read("/w/b") == b"3" * 3000


async def mkdir_a_beside_x(fs: CoreFS, drive: DriveServer) -> None:
    """``mkdir a`` while ``a``'s upload, renamed to ``x``, may still stand at ``a``: it
    succeeds, both show, and ``x`` keeps its bytes once everything settled."""
    await fs.mkdir("a")
    drive.set_faults([])
    assert sorted(await fs.listdir("")) == ["a", "x"]
    await settle(fs, drive)
    assert await fs.read("x") == b"a" * 150_000


def kinds(reader: DriveReader) -> list[tuple[str, str]]:
    """What the drive holds in ``/w``: (name, type), sorted."""
    return sorted((i["name"], i["type"]) for i in reader.list("/w"))


async def test_mkdir_over_a_name_an_upload_was_renamed_away_from(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``a`` uploads; the drive completes it (the file ``a`` stands there) and answers late;
    meanwhile ``a`` is renamed to ``x`` and ``mkdir a`` follows. It must not fail with EEXIST
    (the listing shows no ``a``; the file there is ours, on its way to ``x``): the drive ends
    with the folder ``a`` and the file ``x``."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        drive.set_faults([{"op": "complete", "action": "answer_after", "ms": 1500}])
        await fs.write("a", b"a" * 150_000)
        await poll(lambda: copies(reader, "/w", "a") == [150_000], thread=True)
        await fs.rename("a", "x")
        await mkdir_a_beside_x(fs, drive)
    assert kinds(reader) == [("a", "folder"), ("x", "file")]


async def test_mkdir_refused_by_an_upload_that_moves_away_before_the_listing(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``a`` is renamed to ``x`` while its upload sends (the session was made under ``a``);
    ``mkdir a`` follows while the drive has completed the file at ``a`` and not yet
    answered. Whatever the ``mkdir`` meets, the file there is ours, on its way to ``x``:
    even when the drive's listing, asked after a refusal, is answered only once the
    post-steps moved the file away (no clash left to see), the ``mkdir`` succeeds. The
    drive ends with the folder ``a`` and the file ``x``."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        drive.set_faults(
            [
                {"op": "put_part", "action": "delay", "ms": 1000, "times": 1},
                {"op": "complete", "action": "answer_after", "ms": 300, "times": 1},
            ]
        )
        await fs.write("a", b"a" * 150_000)
        assert fs.rig is not None
        journal = fs.rig.journal
        await poll(lambda: any(j.upload_id for j in journal.jobs(("uploading",))))
        await fs.rename("a", "x")
        await poll(lambda: any(j.completing_at for j in journal.jobs(("uploading",))))
        await trio.sleep(0.1)  # the complete is applied by now, its answer held
        drive.set_faults([{"op": "list", "action": "delay", "ms": 1500, "times": 1}])
        await mkdir_a_beside_x(fs, drive)
    assert kinds(reader) == [("a", "folder"), ("x", "file")]


async def test_a_listing_answered_across_a_landed_uploads_move_hides_it(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``a`` (v1 on the drive) gets v2; the drive completes v2's file (it stands as a second
    ``a`` there) and answers late; meanwhile ``a`` is renamed to ``x``. A listing the drive
    makes in that moment but answers later still, past v2's landing and its move to ``x``
    (the trash of v1 that follows held), must not show ``a`` again: the file was hidden
    when that listing was asked for, so it stays hidden in it, though the journal no longer
    hides it (model seed 34 under load: ``['a', 'x']``)."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path, mount={"list_ttl": 0.001}) as fs:
        await fs.write("a", b"1" * 1000)
        await settle(fs, drive)
        drive.set_faults([{"op": "complete", "action": "answer_after", "ms": 1000}])
        await fs.write("a", b"2" * 2000)
        await poll(lambda: sorted(copies(reader, "/w", "a")) == [1000, 2000], thread=True)
        await fs.rename("a", "x")  # v1 moved to x; v2 retargeted, its file still at a
        w = {"parent_file_id": (reader.get("/w") or {})["file_id"]}  # listings of /w alone
        drive.set_faults(
            [
                {"op": "complete", "action": "answer_after", "ms": 1000},
                {"op": "list", "action": "answer_after", "ms": 2000, "times": 1, "match": w},
                {"op": "trash", "action": "delay", "ms": 3000},  # v1's, after the move
            ]
        )
        assert await fs.listdir("") == ["x"]
        await settle(fs, drive)
        assert await fs.listdir("") == ["x"]
        assert await fs.read("x") == b"2" * 2000
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("x", 2000)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_lost_empty_create_does_not_hide_a_newer_file_after_a_restart(
    tmp_path: Path, drive: DriveServer
) -> None:
    """An empty ``a``'s create (it makes the file at once) is in the drive's hands, held,
    when the daemon dies; after the restart the upload waits for it (it may still land,
    for ``LATE``). A newer version of ``a`` (7,000 bytes) supersedes it and lands. Until
    the reaper has looked for the lost create's file, listings hide new files of that name
    nobody knows; after one more restart no node knows the newer file either (its job is
    done and gone): it must still show, told apart by its size (model seed 8, a suite run
    from a clean clone beside a CPU hog: ``a`` missing after a remount)."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await lose_an_empty_create(fs, drive, 3000)
        await fs.write("a", b"7" * 7000)  # supersedes the empty version
        journal = fs.rig.journal
        await poll(lambda: 7000 in copies(reader, "/w", "a"), thread=True)
        await poll(lambda: not journal.jobs(("pending", "uploading")))  # done, its row gone
        await fs.remount()  # no node knows the landed file now
        assert await fs.listdir("") == ["a"]
        assert await fs.read("a") == b"7" * 7000
        await settle(fs, drive)  # the reaper trashes the lost create's empty file
        assert await fs.listdir("") == ["a"]
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("a", 7000)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_lost_creates_search_never_takes_a_file_renamed_onto_the_name(
    tmp_path: Path, drive: DriveServer
) -> None:
    """An empty ``a``'s create is held by the drive when the daemon dies; after the restart
    its upload waits for the file that create may still make. Meanwhile an empty ``x``
    lands (its job done and gone) and is renamed over ``a``. The search for the lost
    create's file finds ``x``'s file at ``a``, same size and bytes: it must not take it for
    its own (it would land as a superseded version and trash it: ``a`` gone; model seed
    146 beside a CPU hog): the drive ends with ``x``'s file as ``a``."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await lose_an_empty_create(fs, drive, 8000)
        journal = fs.rig.journal
        await fs.write("x", b"")
        await poll(lambda: copies(reader, "/w", "x") == [0], thread=True)
        await poll(lambda: not [j for j in journal.jobs(("pending", "uploading")) if j.name == "x"])
        (landed,) = [i["file_id"] for i in reader.list("/w") if i["name"] == "x"]
        await fs.rename("x", "a")  # over the empty a, whose create's file is looked for
        await settle(fs, drive)
        assert await fs.listdir("") == ["a"]
        assert await fs.read("a") == b""
    assert [(i["name"], i["file_id"]) for i in reader.list("/w")] == [("a", landed)]


async def test_a_new_version_never_replaces_the_file_of_an_unlanded_one(
    tmp_path: Path, drive: DriveServer
) -> None:
    """``y`` (v1 on the drive) gets v2; the drive completes v2's file (a second ``y`` there)
    but its answer is lost to a remount. After the restart, while v2's session is looked
    at again, a listing shows both files. v3 (``>``) supersedes v2, an append reopens v3
    before its upload starts, and ``y`` is renamed to ``c``. What stands for ``y`` on the
    drive is v1's file, never v2's (not landed; trashed when its session finds it
    superseded): the rename must move v1's, and v3 retire it. Before, the listing made
    v2's file the node's, the reopened v3 was queued to replace it, and the rename moved
    it: ``c`` went to the recycle bin with it and v1 stayed as ``y`` (model seed 110 under
    load: the rename failed with EIO, the file in the recycle bin)."""
    reader = DriveReader(drive)
    sections = {"mount": {"list_ttl": 0.001}, "upload": {"delay": 0.5}}
    async with core_in_w(drive, tmp_path, **sections) as fs:
        await fs.write("y", b"1" * 1000)
        await settle(fs, drive)
        drive.set_faults([{"op": "complete", "action": "answer_after", "ms": 60_000}])
        await fs.write("y", b"2" * 2000)
        await poll(lambda: sorted(copies(reader, "/w", "y")) == [1000, 2000], thread=True)
        drive.set_faults([{"op": "listUploadedParts", "action": "delay", "ms": 3000}])
        await fs.remount()  # v2's answer is lost; its session is looked at again (held)
        assert await fs.listdir("") == ["y"]  # the drive shows two files named y
        await fs.write("y", b"3" * 3000)  # supersedes v2
        await fs.append("y", b"4")  # v3 not sent yet: reopened in place
        await fs.rename("y", "c")
        assert await fs.listdir("") == ["c"]
        await settle(fs, drive)
        assert await fs.listdir("") == ["c"]
        assert await fs.read("c") == b"3" * 3000 + b"4"
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("c", 3001)]
    assert reader.read("/w/c") == b"3" * 3000 + b"4"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_superseded_versions_empty_file_is_never_a_spare_after_a_restart(
    tmp_path: Path, drive: DriveServer
) -> None:
    """An empty ``a``'s create is lost to a kill; a newer version supersedes it, whose row
    stays (with its empty cache file) until the reaper has looked for the file that create
    may have made. Another kill: the start-up must not take that empty file for a spare (a
    file nothing refers to): ``b`` would be written into it, and the reaper, ending the
    superseded version, would remove ``b``'s bytes (model seeds 15 and 8395)."""
    reader = DriveReader(drive)
    async with core_in_w(drive, tmp_path) as fs:
        await lose_an_empty_create(fs, drive, 4000)
        await fs.write("a", b"7" * 7000)  # supersedes the empty version
        assert fs.rig is not None
        journal = fs.rig.journal
        await poll(lambda: any(j.rapid_at for j in journal.jobs(("superseded",))))
        await fs.kill()
        await fs.write("b", b"b" * 3000)
        await settle(fs, drive)  # the reaper ends the superseded version
        assert await fs.read("b") == b"b" * 3000
        await fs.remount()
        assert await fs.read("b") == b"b" * 3000
    assert sorted((i["name"], i["size"]) for i in reader.list("/w")) == [("a", 7000), ("b", 3000)]
