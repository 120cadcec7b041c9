"""``RangeReader``: one download URL per file however many reads ask at once, and a fresh one
after it expired (counts of calls, never time)."""

from __future__ import annotations

import time
from typing import Any

import trio

from panfs.reader import RangeReader
from panfs.remote.models import DownloadUrl
from panfs.remote.responses import UrlExpiredError


class FakeClient:
    def __init__(self) -> None:
        self.url_calls = 0
        self.expired_once = False

    async def get_download_url(self, file_id: str) -> DownloadUrl:
        self.url_calls += 1
        await trio.sleep(0.01)  # the answer takes a moment: others ask meanwhile
        return DownloadUrl(f"http://x/{file_id}/{self.url_calls}", time.time() + 3600, 0)

    async def download_into(self, url: str, start: int, buf: bytearray) -> int:
        if self.expired_once:
            self.expired_once = False
            raise UrlExpiredError("Request has expired.", status=403)
        buf[:] = b"x" * len(buf)
        return len(buf)


async def test_concurrent_reads_of_one_file_ask_for_one_url() -> None:
    client = FakeClient()
    reader = RangeReader(client)  # type: ignore[arg-type]
    bufs = [bytearray(10) for _ in range(5)]
    async with trio.open_nursery() as nursery:
        for i, buf in enumerate(bufs):
            nursery.start_soon(reader.get_into, "f1", i * 10, buf)
    assert client.url_calls == 1
    assert all(bytes(b) == b"x" * 10 for b in bufs)
    await reader.get_into("f2", 0, bytearray(4))
    assert client.url_calls == 2


async def test_an_expired_url_is_asked_for_again_once() -> None:
    client: Any = FakeClient()
    reader = RangeReader(client)
    await reader.get_into("f", 0, bytearray(4))
    client.expired_once = True
    assert await reader.get_into("f", 4, bytearray(4)) == 4
    assert client.url_calls == 2
