"""Download bodies read in worker threads (``remote/bodies.py``), in process against the
drive server over HTTP: the bytes equal the source across chunk boundaries, failures are
classified and retried as before (5xx and dropped connections transient, an expired URL
asked for again, a refusal permanent), and a cancelled GET ends its thread before the
cancellation returns, at a seek and at unmount (the server holds the answer for an hour:
a thread left behind keeps the test until its timeout). Counts, never time."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from panfs.errors import PermanentError
from panfs.reader import RangeReader
from panfs.readpath import CHUNK, ReadPath
from panfs.remote.bodies import BodyFetcher
from panfs.remote.client import OpenApiClient
from panfs.remote.responses import UrlExpiredError, wrong_range
from tests.support.core import test_client, upload_bytes
from tests.support.drive import DriveServer

KiB, MiB = 1 << 10, 1 << 20
HOUR_MS = 3_600_000


def _bodies(client: OpenApiClient) -> BodyFetcher:
    assert client.bodies is not None
    return client.bodies


async def _downloads(drive: DriveServer) -> int:
    stats = await trio.to_thread.run_sync(drive.stats)
    return int(stats["requests"].get("download", 0))


async def test_bytes_equal_the_source_across_chunk_boundaries(
    drive: DriveServer, tmp_path: Path
) -> None:
    data = random.Random(5).randbytes(2 * CHUNK + 12345)
    async with test_client(drive, tmp_path) as client:
        fid = await upload_bytes(client, "root", "b.bin", data)
        rp = ReadPath(RangeReader(client), None, memory=3 * CHUNK)
        got = bytearray()
        async with trio.open_nursery() as nursery:
            await nursery.start(rp.run)
            step = 1_000_003  # no read starts or ends on a chunk boundary
            for off in range(0, len(data), step):
                got += await rp.read(fid, len(data), off, step)
            nursery.cancel_scope.cancel()
        assert got == data
        assert _bodies(client).gets >= 3  # whole chunks came through the threads
        assert _bodies(client).running == 0


@pytest.mark.parametrize("threads", [True, False], ids=["threads", "httpx"])
async def test_failures_are_classified_and_retried_as_before(
    drive: DriveServer, tmp_path: Path, threads: bool
) -> None:
    """Either path (worker threads; httpx, which takes the downloads when an environment
    proxy is set): the same bytes, errors and retries."""
    data = random.Random(6).randbytes(MiB + 7)
    async with test_client(drive, tmp_path) as client:
        if not threads:
            client.bodies = None
        fid = await upload_bytes(client, "root", "f.bin", data)
        url = (await client.get_download_url(fid)).url
        # a 5xx and a dropped connection are transient: retried until the bytes come
        drive.set_faults(
            [
                {"op": "download", "action": "oss_error", "code": "InternalError", "times": 1},
                {"op": "download", "action": "drop", "times": 1},
            ]
        )
        drive.reset_stats()
        buf = bytearray(len(data))
        assert await client.download_into(url, 0, buf) == len(data)
        assert buf == data
        assert await _downloads(drive) == 3
        # the range past the end: the bytes there are, no error
        tail = bytearray(100)
        assert await client.download_into(url, len(data) - 40, tail) == 40
        assert tail[:40] == data[-40:]
        # an expired URL raises at once: the reader asks for a fresh one, once
        drive.set_faults([{"op": "download", "action": "oss_error", "code": "AccessDenied"}])
        drive.reset_stats()
        with pytest.raises(UrlExpiredError):
            await client.download_into(url, 0, bytearray(10))
        assert await _downloads(drive) == 1
        # a refusal is permanent: sent once, not retried
        drive.set_faults(
            [{"op": "download", "action": "oss_error", "code": "NoSuchUpload", "status": 404}]
        )
        drive.reset_stats()
        with pytest.raises(PermanentError) as err:
            await client.download_into(url, 0, bytearray(10))
        assert not err.value.transient
        assert err.value.code == "NoSuchUpload"
        assert await _downloads(drive) == 1
        drive.set_faults([])
        buf = bytearray(len(data))  # the connections are still good for the next GETs
        assert await client.download_into(url, 0, buf) == len(data)
        assert buf == data


async def test_a_cancelled_get_ends_its_thread_before_the_cancel_returns(
    drive: DriveServer, tmp_path: Path
) -> None:
    data = random.Random(7).randbytes(MiB)
    async with test_client(drive, tmp_path) as client:
        fid = await upload_bytes(client, "root", "c.bin", data)
        url = (await client.get_download_url(fid)).url
        bodies = _bodies(client)
        drive.set_faults([{"op": "download", "action": "delay", "ms": HOUR_MS, "times": 1}])
        drive.reset_stats()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.download_into, url, 0, bytearray(len(data)))
            while not await _downloads(drive):  # noqa: ASYNC110
                await trio.sleep(0.01)  # until its thread waits for the held answer
            assert bodies.running == 1
            nursery.cancel_scope.cancel()
        assert bodies.running == 0  # its thread ended before the cancellation returned
        buf = bytearray(len(data))
        assert await client.download_into(url, 0, buf) == len(data)
        assert buf == data


async def test_unmount_cancels_read_ahead_held_in_threads(
    drive: DriveServer, tmp_path: Path
) -> None:
    data = random.Random(8).randbytes(3 * CHUNK)
    async with test_client(drive, tmp_path) as client:
        fid = await upload_bytes(client, "root", "u.bin", data)
        bodies = _bodies(client)
        rp = ReadPath(RangeReader(client), None)
        async with trio.open_nursery() as mount:
            await mount.start(rp.run)
            assert await rp.read(fid, len(data), 0, 128 * KiB) == data[: 128 * KiB]
            while bodies.running:  # noqa: ASYNC110
                await trio.sleep(0.01)  # the first read-ahead is in
            # from here the drive holds every answer: the next read's read-ahead waits
            drive.set_faults([{"op": "download", "action": "delay", "ms": HOUR_MS}])
            drive.reset_stats()
            assert (
                await rp.read(fid, len(data), 128 * KiB, 128 * KiB) == data[128 * KiB : 256 * KiB]
            )
            while not await _downloads(drive):  # noqa: ASYNC110
                await trio.sleep(0.01)
            assert bodies.running >= 1
            mount.cancel_scope.cancel()  # what unmounting does
        assert bodies.running == 0


def test_a_206_for_another_range_is_refused() -> None:
    """A proxy or CDN answering another request's range: fetched again, never kept."""
    assert wrong_range(206, {"content-range": "bytes 0-99/1000"}, 0) is None
    assert wrong_range(206, {}, 500) is None  # not said: taken as asked
    assert wrong_range(200, {}, 500) is None
    assert wrong_range(206, {"content-range": "bytes 0-99/1000"}, 500) is not None
