"""One ranged GET of a drive file's bytes, with its download URL kept for reuse.

Owns: download URLs per file (reused until shortly before they expire; dropped
after a failed GET, so the next one asks for a fresh URL). Must not: decide what to
fetch or keep bytes (``readpath.py`` does), write cache files, or know about inodes.
"""

from __future__ import annotations

import time

from panfs.remote.client import OpenApiClient

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

    async def get(self, file_id: str, start: int, end: int) -> bytes:
        """The bytes [start, end) of the drive file (fewer only if it ended early)."""
        if start >= end:
            return b""
        try:
            data = await self.client.download_range(await self._url(file_id), start, end)
        except Exception:
            self._urls.pop(file_id, None)
            raise
        self.gets += 1
        self.fetched += len(data)
        return data
