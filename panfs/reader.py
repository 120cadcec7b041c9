"""The read path for bytes only on the drive: ranged GETs with read-ahead.

Owns: download URLs per file (reused until shortly before they expire), and a
small read-ahead window per file so sequential reads become few large GETs.
Must not: write cache files (the core keeps what it fetched in the clean cache) or
know about inodes.
"""

from __future__ import annotations

import time

from panfs.remote.drive import Drive

READ_AHEAD = 8 << 20
URL_MARGIN = 30.0


class RangeReader:
    def __init__(self, client: Drive) -> None:
        self.client = client
        self._urls: dict[str, tuple[str, float]] = {}
        self._window: dict[str, tuple[int, bytes]] = {}

    async def _url(self, file_id: str) -> str:
        cached = self._urls.get(file_id)
        if cached and cached[1] - URL_MARGIN > time.time():
            return cached[0]
        d = await self.client.get_download_url(file_id)
        self._urls[file_id] = (d.url, d.expires_at)
        return d.url

    async def fetch(
        self, file_id: str, size: int, off: int, length: int, ahead_until: int | None = None
    ) -> tuple[int, bytes]:
        """Bytes from ``off`` covering at least [off, off+length) ∩ file, with read-ahead
        (not past ``ahead_until``, where bytes are present already): returns (start, data)
        with start <= off. Served from the last window when it can."""
        end = min(size, off + length)
        if off >= end:
            return off, b""
        win = self._window.get(file_id)
        if win is not None and win[0] <= off and end <= win[0] + len(win[1]):
            return win
        ahead = off + READ_AHEAD if ahead_until is None else min(ahead_until, off + READ_AHEAD)
        fetch_end = min(size, max(end, ahead))
        try:
            data = await self.client.download_range(await self._url(file_id), off, fetch_end)
        except Exception:
            self._urls.pop(file_id, None)
            raise
        if len(self._window) > 16:
            self._window.clear()
        self._window[file_id] = (off, data)
        return off, data
