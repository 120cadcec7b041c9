"""Clean cached bytes of drive files: downloaded ranges and uploaded versions kept for reading.

Owns: the ``clean`` table and its files: per drive file, one cache file (sparse
while only partly downloaded) and the byte ranges present in it; reading a range
that is present, storing a downloaded range, adopting an uploaded version's cache
file whole, and least-recently-used eviction until the clean bytes fit
``cache.max_size`` (a drive file larger than that is never kept). A stored range is
served at once but recorded in the table only by ``persist`` (run every second),
after its bytes were fsynced: a row never names bytes a power cut could have lost,
and storing costs no commit. Dirty data
(versions being written or waiting for upload) never has a row here, so it is never
evicted. Must not: speak HTTP or decide what
to fetch (the core does).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass

import trio

from panfs.cache import Cache
from panfs.direct import Direct

log = logging.getLogger(__name__)


@dataclass
class Entry:
    path: str
    size: int
    ranges: list[list[int]]  # sorted, merged [start, end)
    used_at: float

    @property
    def present(self) -> int:
        return sum(e - s for s, e in self.ranges)

    def covers(self, start: int, end: int) -> bool:
        return any(s <= start and end <= e for s, e in self.ranges)


def merge(ranges: list[list[int]], start: int, end: int) -> list[list[int]]:
    out: list[list[int]] = []
    for s, e in sorted([*ranges, [start, end]]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


class CleanCache:
    """All methods on the trio thread; the writes of ``store`` (``O_DIRECT`` where the
    bytes are page-aligned: ``panfs.direct``) and the fsyncs of ``persist`` run in worker
    threads."""

    def __init__(self, conn: sqlite3.Connection, cache: Cache, max_size: int) -> None:
        self.conn = conn  # schema: panfs.metadata
        self.cache = cache
        self.max_size = max_size
        self.entries: dict[str, Entry] = {}
        for file_id, path, size, ranges, used_at in conn.execute(
            "SELECT file_id, path, size, ranges, used_at FROM clean"
        ):
            self.entries[file_id] = Entry(path, size, json.loads(ranges), used_at)
        # bytes present over all entries, kept as they change (eviction runs per stored range)
        self._present = sum(e.present for e in self.entries.values())
        self._unsaved: set[str] = set()  # file_ids with ranges stored since the last persist
        self.direct = Direct()  # stored bytes skip the page cache where they can

    # -- reading -----------------------------------------------------------------------
    def usage(self) -> int:
        return self._present

    def paths(self) -> set[str]:
        return {e.path for e in self.entries.values()}

    def _entry(self, file_id: str, size: int) -> Entry | None:
        e = self.entries.get(file_id)
        if e is not None and e.size != size:
            self.drop(file_id)  # the drive's file is not what we cached: never serve it
            return None
        return e

    def full_path(self, file_id: str, size: int) -> str | None:
        """The cache file if every byte of the drive file is present."""
        e = self._entry(file_id, size)
        if e is None or not (size == 0 or e.covers(0, size)):
            return None
        e.used_at = time.time()
        return e.path

    def read(self, file_id: str, size: int, off: int, length: int) -> bytes | None:
        """The bytes [off, off+length) ∩ file if all are present, else None."""
        end = min(size, off + length)
        e = self._entry(file_id, size)
        if e is None or off >= end or not e.covers(off, end):
            return None
        try:
            fd = os.open(e.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.drop(file_id)
            return None
        try:
            data = os.pread(fd, end - off, off)
        finally:
            os.close(fd)
        e.used_at = time.time()
        return data

    def next_present(self, file_id: str, off: int) -> int | None:
        """Where the next present range after ``off`` starts (read-ahead stops there)."""
        e = self.entries.get(file_id)
        if e is None:
            return None
        starts = [s for s, _ in e.ranges if s > off]
        return min(starts) if starts else None

    def gap_from(self, file_id: str, off: int) -> int:
        """The first byte at or after ``off`` that is not present."""
        e = self.entries.get(file_id)
        for s, end in e.ranges if e is not None else []:
            if s <= off < end:
                return end
        return off

    # -- filling ------------------------------------------------------------------------
    async def store(
        self,
        file_id: str,
        size: int,
        off: int,
        data: bytes | bytearray | memoryview,
        *,
        pin: bool = False,
    ) -> None:
        """Keep a downloaded range; a full cache disk just means it is not kept. ``pin``:
        this file is being fetched whole and must survive eviction (even past the bound).
        A file larger than the bound is not kept: a stream of it would evict its own start
        before its end, and everything else first."""
        if not data or (not pin and not self.fits(size)):
            return
        self.cache.writing()
        if not self.cache.has_room(len(data)):
            return  # clean data never takes the headroom dirty data and the journal need
        e = self._entry(file_id, size)
        if e is None:
            e = Entry(self.cache.new_clean_file(), size, [], time.time())
            self.entries[file_id] = e
        try:
            await trio.to_thread.run_sync(self.direct.write_at, e.path, data, off)
        except OSError as err:
            log.info("not caching a range of %s: %s", file_id, err.strerror)
            return
        if self.entries.get(file_id) is not e:
            return  # dropped meanwhile
        before = e.present
        e.ranges = merge(e.ranges, off, off + len(data))
        self._present += e.present - before
        e.used_at = time.time()
        self._unsaved.add(file_id)
        self.evict(keep=file_id if pin else None)

    async def persist(self) -> int:
        """Record the ranges stored since the last call, once their bytes are on disk
        (fsynced in a worker thread). Returns how many entries were recorded."""
        if not self._unsaved:
            return 0
        todo = {f: self.entries[f] for f in self._unsaved if f in self.entries}
        self._unsaved.clear()
        snapshot = {f: (e.path, [list(r) for r in e.ranges]) for f, e in todo.items()}

        def sync() -> None:
            for path, _ in snapshot.values():
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

        await trio.to_thread.run_sync(sync)
        saved = 0
        with self.conn:
            for file_id, (path, ranges) in snapshot.items():
                e = self.entries.get(file_id)
                if e is None or e.path != path:
                    continue  # dropped meanwhile
                self.conn.execute(
                    "INSERT OR REPLACE INTO clean VALUES (?, ?, ?, ?, ?)",
                    (file_id, path, e.size, json.dumps(ranges), e.used_at),
                )
                saved += 1
        return saved

    def fits(self, size: int) -> bool:
        """Whether a drive file of ``size`` bytes may be kept at all."""
        return size <= self.max_size

    def adopt(self, file_id: str, path: str, size: int) -> None:
        """An uploaded version's cache file holds the drive file's bytes: keep it as clean
        (unless it is larger than the bound: then it goes, and nothing else is evicted)."""
        if not self.fits(size):
            self.drop(file_id)
            self.cache.remove(path)
            return
        path = self.cache.to_clean(path)  # into the clean folder when state and cache split
        old = self.entries.get(file_id)
        if old is not None:
            self._present -= old.present
            if old.path != path:
                self.cache.remove(old.path)
        e = Entry(path, size, [[0, size]] if size else [], time.time())
        self.entries[file_id] = e
        self._unsaved.discard(file_id)
        self._present += e.present
        self._save(file_id, e)
        self.evict()

    def _save(self, file_id: str, e: Entry) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO clean VALUES (?, ?, ?, ?, ?)",
                (file_id, e.path, e.size, json.dumps(e.ranges), e.used_at),
            )

    # -- emptying -----------------------------------------------------------------------
    def drop(self, file_id: str) -> None:
        e = self.entries.pop(file_id, None)
        if e is None:
            return
        self._present -= e.present
        self._unsaved.discard(file_id)
        self.cache.remove(e.path)
        with self.conn:
            self.conn.execute("DELETE FROM clean WHERE file_id = ?", (file_id,))

    def evict(self, keep: str | None = None) -> None:
        """Least recently used first, until the clean bytes fit ``max_size``. ``keep`` (a
        file being fetched whole) is never evicted."""
        total = self.usage()
        if total <= self.max_size:
            return
        evicted = 0
        for file_id, e in sorted(self.entries.items(), key=lambda kv: kv[1].used_at):
            if total <= self.max_size:
                break
            if file_id == keep:
                continue
            total -= e.present
            self.drop(file_id)
            evicted += 1
        log.info("cache: evicted %d clean files, %d bytes kept", evicted, total)

    def forget_missing(self) -> None:
        """Start-up: rows whose cache file is gone are dropped."""
        for file_id, e in list(self.entries.items()):
            if not os.path.exists(e.path):
                self.drop(file_id)
