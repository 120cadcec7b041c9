"""One ranged GET of a drive file's bytes, with its download URL kept for reuse.

Owns: download URLs per file (reused until shortly before they expire; dropped
after a failed GET, so the next one asks for a fresh URL), and streaming a GET's
body into one buffer of the range's size (``OpenApiClient.download_into``: the client's
one retry policy, no joined copies). Must not: speak HTTP (the client does), decide what
to fetch or keep bytes (``readpath.py`` does), write cache files, or know about inodes.
"""

from __future__ import annotations

import time

import trio

from panfs.remote.client import OpenApiClient
from panfs.remote.models import Into
from panfs.remote.responses import UrlExpiredError

URL_MARGIN = 30.0


class RangeReader:
    def __init__(self, client: OpenApiClient) -> None:
        self.client = client
        self._urls: dict[str, tuple[str, float]] = {}
        self._asking: dict[str, trio.Lock] = {}  # one getDownloadUrl per file at a time
        self.gets = 0  # ranged GETs sent
        self.fetched = 0  # bytes they returned

    async def _url(self, file_id: str) -> str:
        """The file's download URL, asked once however many reads want it at once (the
        service allows one getDownloadUrl a second)."""
        lock = self._asking.setdefault(file_id, trio.Lock())
        try:
            async with lock:
                cached = self._urls.get(file_id)
                if cached and cached[1] - URL_MARGIN > time.time():
                    return cached[0]
                d = await self.client.get_download_url(file_id)
                self._urls[file_id] = (d.url, d.expires_at)
                return d.url
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._asking.pop(file_id, None)

    async def get(self, file_id: str, start: int, end: int) -> bytearray:
        """The bytes [start, end) of the drive file (fewer only if it ended early)."""
        buf = bytearray(max(0, end - start))
        del buf[await self.get_into(file_id, start, buf) :]
        return buf

    async def get_into(self, file_id: str, start: int, buf: Into) -> int:
        """Fill ``buf`` with the bytes from ``start`` on; returns how many came (fewer
        than ``len(buf)`` only if the file ended early). A reused buffer costs no page
        faults: a fresh one of megabytes is zeroed page by page first. The client retries
        transient failures; an expired URL is asked for again, once."""
        if not buf:
            return 0
        try:
            try:
                n = await self.client.download_into(await self._url(file_id), start, buf)
            except UrlExpiredError:
                self._urls.pop(file_id, None)
                n = await self.client.download_into(await self._url(file_id), start, buf)
        except Exception:
            self._urls.pop(file_id, None)  # the next read asks for a fresh URL
            raise
        self.gets += 1
        self.fetched += n
        return n
