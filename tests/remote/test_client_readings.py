"""The client against the drive server's readings of the protocol, in process, over HTTP.

The pacer keeps a burst of calls under the official limits (no 429 at all); a 429
makes a call wait, never fail; a 5xx is transient whatever its body; a namespace
call whose answer was lost converges to its outcome; ``move`` never relies on
``new_name``; a file without a download URL is one clear error.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import trio

from panfs.errors import NoDownloadUrl, TransientError
from tests.support.core import test_client, upload_bytes
from tests.support.drive import DriveServer

KiB = 1 << 10


def _json_fault(op: str, status: int, body: str, **more: object) -> dict[str, object]:
    return {
        "op": op,
        "action": "status",
        "status": status,
        "body": body,
        "content_type": "application/json",
        **more,
    }


async def test_a_burst_stays_under_the_official_limits(drive: DriveServer, tmp_path: Path) -> None:
    """Lists (4/s), download URLs (1/s) and other calls (15/s shared) at once from many
    tasks: the server, at its default official limits, never answers 429."""
    async with test_client(drive, tmp_path) as client:
        fid = await upload_bytes(client, "root", "x.bin", b"x" * 1000)
        drive.reset_stats()

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(client.list_folder, "root")
                nursery.start_soon(client.get_file, fid)
            for _ in range(3):
                nursery.start_soon(client.get_download_url, fid)
    stats = drive.stats()
    assert stats["too_many_requests"] == 0
    assert stats["requests"]["list"] == 10
    assert stats["requests"]["getDownloadUrl"] == 3


async def test_429_waits_however_often_it_comes(drive: DriveServer, tmp_path: Path) -> None:
    """Seven 429s in a row (more than the call's attempts): the call waits them out."""
    async with test_client(drive, tmp_path) as client:
        drive.set_faults(
            [
                _json_fault(
                    "list",
                    429,
                    '{"code":"TooManyRequests"}',
                    times=7,
                    headers={"x-retry-after": "50"},
                )
            ]
        )
        assert await client.list_folder("root") == []
        assert drive.stats()["requests"]["list"] == 8


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<?xml version='1.0'?><Error><Code>InternalError</Code></Error>", "application/xml"),
        ("<html><body>504 Gateway Time-out</body></html>", "text/html"),
        ('{"code":"ServiceUnavailable","message":"busy"}', "application/json"),
        ("", "text/plain"),
    ],
)
async def test_any_5xx_is_transient(
    drive: DriveServer, tmp_path: Path, body: str, content_type: str
) -> None:
    async with test_client(drive, tmp_path) as client:
        drive.set_faults(
            [
                {
                    "op": "list",
                    "action": "status",
                    "status": 503,
                    "body": body,
                    "content_type": content_type,
                    "times": 2,
                }
            ]
        )
        assert await client.list_folder("root") == []
        drive.set_faults(
            [
                {
                    "op": "list",
                    "action": "status",
                    "status": 500,
                    "body": body,
                    "content_type": content_type,
                }
            ]
        )
        with pytest.raises(TransientError):
            await client.list_folder("root")


async def test_lost_answers_to_namespace_calls_converge(drive: DriveServer, tmp_path: Path) -> None:
    """mkdir, rename, move and trash whose answer is lost: the call reports the outcome,
    once, and the drive holds exactly that."""
    async with test_client(drive, tmp_path) as client:
        for op in ("create", "update", "move", "trash"):
            drive.set_faults([{"op": op, "action": "drop_after_store", "times": 1}])
            if op == "create":
                res = await client.create_folder("root", "a")
                assert not res.exist
                folder = res.file_id
            elif op == "update":
                fid = await upload_bytes(client, "root", "f.bin", b"y" * 500)
                drive.set_faults([{"op": op, "action": "drop_after_store", "times": 1}])
                assert (await client.rename(fid, "g.bin")).name == "g.bin"
            elif op == "move":
                await client.move(fid, folder, new_name="h.bin")
            else:
                other = (await client.create_folder("root", "gone")).file_id
                drive.set_faults([{"op": op, "action": "drop_after_store", "times": 1}])
                await client.trash(other)
        assert sorted(f.name for f in await client.list_folder("root")) == ["a"]
        inside = await client.list_folder(folder)
        assert [(f.name, f.file_id) for f in inside] == [("h.bin", fid)]


async def test_a_mkdir_whose_every_attempt_was_lost_is_ours_next_time(
    drive: DriveServer, tmp_path: Path
) -> None:
    """The call failed (every answer lost) but the folder was made: the next mkdir of
    the same name gets that folder, not "File exists"."""
    async with test_client(drive, tmp_path, api_attempts=2) as client:
        drive.set_faults([{"op": "create", "action": "drop_after_store", "times": 2}])
        with pytest.raises(TransientError):
            await client.create_folder("root", "d")
        res = await client.create_folder("root", "d")
        assert not res.exist
        assert [f.file_id for f in await client.list_folder("root")] == [res.file_id]


@pytest.mark.parametrize("reading", ["rename", "on-conflict"])
async def test_move_with_a_new_name_lands_under_it(reading: str, tmp_path: Path) -> None:
    """Under either reading of ``new_name``, and with the old name taken at the target."""
    with DriveServer(tmp_path / "d", "--move-new-name", reading) as drive:
        async with test_client(drive, tmp_path) as client:
            a = (await client.create_folder("root", "a")).file_id
            b = (await client.create_folder("root", "b")).file_id
            fid = await upload_bytes(client, a, "x.bin", b"1" * 300)
            taken = await upload_bytes(client, b, "x.bin", b"2" * 300)
            await client.move(fid, b, new_name="y.bin")
            names = {f.name: f.file_id for f in await client.list_folder(b)}
            assert names == {"x.bin": taken, "y.bin": fid}
            assert await client.list_folder(a) == []


async def test_no_download_url_is_one_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with DriveServer(tmp_path / "d", "--download-url-missing", "*.livp") as drive:
        async with test_client(drive, tmp_path) as client:
            fid = await upload_bytes(client, "root", "p.livp", b"z" * 400)
            ok = await upload_bytes(client, "root", "p.bin", b"z" * 400)
            with caplog.at_level(logging.WARNING, "panfs"):
                for _ in range(3):
                    with pytest.raises(NoDownloadUrl, match="p.livp|" + fid):
                        await client.get_download_url(fid)
            assert len([r for r in caplog.records if fid in r.getMessage()]) == 1
            assert drive.stats()["requests"]["getDownloadUrl"] == 1  # not asked again soon
            d = await client.get_download_url(ok)
            assert d.expires_at > time.time() + 3600  # expire_sec 14400 was asked
            assert await client.download_range(d.url, 0, 400) == b"z" * 400


@pytest.mark.parametrize("reading", ["not-found", "recycle-bin"])
async def test_trash_of_a_trashed_file_is_done_under_either_reading(
    tmp_path: Path, reading: str
) -> None:
    """A doomed file is trashed twice (a late complete may have landed it between): the
    second trash, of a file already in the recycle bin, answers 404 or
    ``ForbiddenFileInTheRecycleBin`` depending on the reading; both count as done."""
    with DriveServer(tmp_path / "d", "--trash-trashed", reading) as drive:
        async with test_client(drive, tmp_path) as client:
            fid = await upload_bytes(client, "root", "x.bin", b"x" * 1000)
            await client.trash(fid)
            await client.trash(fid)
            want = {"recycle-bin": "ForbiddenFileInTheRecycleBin", "not-found": "NotFound.File"}
            assert drive.stats()["errors"].get(want[reading]) == 1  # the reading was met
            assert [f.name for f in await client.list_folder("root")] == []
