"""One ranged GET of a drive file's bytes, with its download URL kept for reuse.

Owns: download URLs per file (reused until shortly before they expire; dropped
after a failed GET, so the next one asks for a fresh URL), and streaming a GET's
body into one buffer of the range's size: no list of pieces joined at the end (twice
the range in memory), and no response object holding the bytes (httpx responses sit
in reference cycles, so a held body would wait for the garbage collector). Error
answers are classified as the client classifies them. Must not: decide what to fetch
or keep bytes (``readpath.py`` does), write cache files, or know about inodes.
"""

from __future__ import annotations

import time

import httpx

from panfs.errors import NetworkError
from panfs.remote.client import OpenApiClient
from panfs.remote.responses import UrlExpiredError, classify_oss

URL_MARGIN = 30.0


class RangeReader:
    def __init__(self, client: OpenApiClient) -> None:
        self.client = client
        self._urls: dict[str, tuple[str, float]] = {}
        self.gets = 0  # ranged GETs sent
        self.fetched = 0  # bytes they returned

    async def _url(self, file_id: str) -> str:
        cached = self._urls.get(file_id)
        if cached and cached[1] - URL_MARGIN > time.time():
            return cached[0]
        d = await self.client.get_download_url(file_id)
        self._urls[file_id] = (d.url, d.expires_at)
        return d.url

    async def get(self, file_id: str, start: int, end: int) -> bytearray:
        """The bytes [start, end) of the drive file (fewer only if it ended early)."""
        buf = bytearray(max(0, end - start))
        del buf[await self.get_into(file_id, start, buf) :]
        return buf

    async def get_into(self, file_id: str, start: int, buf: bytearray) -> int:
        """Fill ``buf`` with the bytes from ``start`` on; returns how many came (fewer
        than ``len(buf)`` only if the file ended early). A reused buffer costs no page
        faults: a fresh one of megabytes is zeroed page by page first."""
        if not buf:
            return 0
        try:
            n = await self._download(await self._url(file_id), start, start + len(buf), buf)
        except Exception:
            self._urls.pop(file_id, None)
            raise
        self.gets += 1
        self.fetched += n
        return n

    async def _download(self, url: str, start: int, end: int, buf: bytearray) -> int:
        n = 0
        try:
            async with self.client.http.stream(
                "GET", url, headers={"Range": f"bytes={start}-{end - 1}"}
            ) as resp:
                if resp.status_code not in (200, 206):
                    body = await resp.aread()
                    err = classify_oss(resp.status_code, body, dict(resp.headers))
                    if resp.status_code == 403 and "expired" in err.message.lower():
                        raise UrlExpiredError(
                            err.message, status=403, code=err.code, body_start=err.body_start
                        )
                    raise err
                skip = start if resp.status_code == 200 else 0  # the whole file came
                async for piece in resp.aiter_raw():
                    if skip:
                        cut = min(skip, len(piece))
                        piece, skip = piece[cut:], skip - cut
                    take = min(len(piece), len(buf) - n)
                    buf[n : n + take] = piece[:take] if take < len(piece) else piece
                    n += take
                    if n == len(buf):
                        break
        except httpx.TransportError as e:
            raise NetworkError(f"download: {type(e).__name__}: {e}") from None
        return n
