"""The read-ahead of drive-only bytes, in process against a counting fake of the drive:
sequential reads grow the window into few large GETs, random reads fetch small ranges,
the memory budget bounds everything in flight, every byte comes back right, and a failed
read-ahead GET is fetched again by the read that needs it. Counts of bytes, never time."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.errors import NetworkError
from panfs.metadata import open_db
from panfs.readpath import CHUNK, FIRST_WINDOW, MIN_FETCH, ReadPath, Stream

KiB, MiB = 1 << 10, 1 << 20
PERIOD = 1_000_003  # the fake file's bytes repeat with a period no read size divides
BLOCK = random.Random(7).randbytes(PERIOD)


def expected(off: int, n: int) -> bytes:
    return (BLOCK * (n // PERIOD + 2))[off % PERIOD : off % PERIOD + n]


class FakeDrive:
    """Answers ranged GETs of any file with ``expected`` bytes; counts them; may fail."""

    def __init__(self, fail_at: set[int] | None = None) -> None:
        self.gets: list[tuple[int, int]] = []
        self.fail_at = fail_at or set()  # a GET covering one of these fails, once each
        self.budget_seen = 0
        self.rp: ReadPath | None = None

    async def get(self, file_id: str, start: int, end: int) -> bytearray:
        buf = bytearray(end - start)
        await self.get_into(file_id, start, buf)
        return buf

    async def get_into(self, file_id: str, start: int, buf: bytearray) -> int:
        await (
            trio.lowlevel.checkpoint()
        )  # a real GET yields: other reads and read-ahead run meanwhile
        if self.rp is not None:
            self.budget_seen = max(self.budget_seen, self.rp.budget.used)
        for x in sorted(self.fail_at):
            if start <= x < start + len(buf):
                self.fail_at.discard(x)
                raise NetworkError("connection reset")
        self.gets.append((start, len(buf)))
        buf[:] = expected(start, len(buf))
        return len(buf)

    @property
    def fetched(self) -> int:
        return sum(n for _, n in self.gets)


async def _read_all(rp: ReadPath, size: int, step: int) -> bytes:
    out = bytearray()
    for off in range(0, size, step):
        out += await rp.read("f", size, off, step)
    return bytes(out)


def test_window_doubles_on_sequential_reads_and_collapses_on_a_seek() -> None:
    s = Stream(max_window=8 * MiB)
    s.observe(0, 128 * KiB)
    assert s.window == FIRST_WINDOW
    windows = []
    for i in range(1, 10):
        s.observe(i * 128 * KiB, (i + 1) * 128 * KiB)
        windows.append(s.window)
    assert windows == [min(8 * MiB, FIRST_WINDOW << i) for i in range(1, 10)]
    s.observe(10 * 128 * KiB - 4 * KiB, 10 * 128 * KiB)  # a little behind: reordered, kept
    assert s.window == 8 * MiB
    assert s.observe(900 * MiB, 900 * MiB + 64 * KiB)  # a seek
    assert s.window == 0


async def test_sequential_read_is_few_large_gets_each_byte_once() -> None:
    size = 48 * MiB + 12345
    drive = FakeDrive()
    rp = ReadPath(drive, None, memory=16 * MiB)
    drive.rp = rp
    async with trio.open_nursery() as nursery:
        await nursery.start(rp.run)
        got = await _read_all(rp, size, 128 * KiB)
        nursery.cancel_scope.cancel()
    assert got == expected(0, size)
    assert drive.fetched == size  # nothing fetched twice, nothing past the end
    assert len(drive.gets) < size // CHUNK + 20  # not one GET per 128 KiB read (389 reads)
    assert max(n for _, n in drive.gets) == CHUNK
    assert rp.budget.peak <= 16 * MiB + MIN_FETCH * 2
    assert rp.budget.used == 0  # everything went back


async def test_random_reads_fetch_small_ranges() -> None:
    size = 1 << 30
    drive = FakeDrive()
    rp = ReadPath(drive, None, memory=16 * MiB)
    rng = random.Random(3)
    async with trio.open_nursery() as nursery:
        await nursery.start(rp.run)
        for _ in range(200):
            off = rng.randrange(size - 64 * KiB)
            assert await rp.read("f", size, off, 64 * KiB) == expected(off, 64 * KiB)
        nursery.cancel_scope.cancel()
    assert len(drive.gets) <= 200 + 10
    assert drive.fetched <= 200 * 2 * MIN_FETCH  # not 200 windows of megabytes
    assert rp.budget.used == 0


async def test_memory_budget_bounds_read_ahead_of_many_files() -> None:
    drive = FakeDrive()
    rp = ReadPath(drive, None, memory=4 * MiB)
    drive.rp = rp
    size = 16 * MiB

    async def reader(name: str) -> None:
        for off in range(0, size, 128 * KiB):
            assert await rp.read(name, size, off, 128 * KiB) == expected(off, 128 * KiB)

    async with trio.open_nursery() as nursery:
        await nursery.start(rp.run)
        async with trio.open_nursery() as readers:
            for i in range(4):
                readers.start_soon(reader, f"f{i}")
        nursery.cancel_scope.cancel()
    # read-ahead never passes the budget; reads the kernel waits for add at most their own
    # bytes (4 readers x one 128 KiB read each)
    assert rp.budget.peak <= 4 * MiB + 4 * 2 * MIN_FETCH
    assert drive.budget_seen <= 4 * MiB + 4 * 2 * MIN_FETCH
    assert drive.fetched <= 4 * size + 4 * MiB  # stolen read-ahead is fetched again, bounded
    assert rp.budget.used == 0


async def test_a_failed_get_is_sent_again_by_the_read_that_needs_it() -> None:
    size = 24 * MiB
    drive = FakeDrive(fail_at={4 * MiB + 1, 12 * MiB + 1, 0})
    rp = ReadPath(drive, None, memory=8 * MiB)
    async with trio.open_nursery() as nursery:
        await nursery.start(rp.run)
        got = await _read_all(rp, size, 128 * KiB)
        nursery.cancel_scope.cancel()
    assert got == expected(0, size)
    assert not drive.fail_at  # all three failed (the first read's own GET too), yet all came


async def test_reads_without_the_nursery_fetch_only_what_they_read() -> None:
    drive = FakeDrive(fail_at={0, 1})
    rp = ReadPath(drive, None)
    with pytest.raises(NetworkError):  # failed, and failed again: the error reaches the read
        await rp.read("f", 10 * MiB, 0, 128 * KiB)
    assert await rp.read("f", 10 * MiB, 0, 128 * KiB) == expected(0, 128 * KiB)
    assert drive.fetched == 128 * KiB


async def test_fetched_chunks_land_in_the_clean_cache(tmp_path: Path) -> None:
    db = open_db(tmp_path / "j.db")
    clean = CleanCache(db, Cache(tmp_path / "c"), max_size=1 << 30)
    drive = FakeDrive()
    rp = ReadPath(drive, clean, memory=8 * MiB)
    rp.stores = 100  # this disk keeps up: every chunk is kept
    size = 10 * MiB + 7
    async with trio.open_nursery() as nursery:
        await nursery.start(rp.run)
        assert await _read_all(rp, size, 128 * KiB) == expected(0, size)
        nursery.cancel_scope.cancel()
    assert clean.usage() == size
    assert rp.not_cached == 0
    before = drive.fetched
    assert clean.full_path("f", size) is not None
    assert await _read_all(rp, size, 1 * MiB) == expected(0, size)
    assert drive.fetched == before  # all from the clean cache now
    assert await clean.persist() == 1
    db.close()


async def test_read_ahead_never_fetches_what_the_clean_cache_kept(tmp_path: Path) -> None:
    """A tail kept by an earlier mount is not fetched again when a read from the start
    reaches it: reads served from memory still trim their read-ahead to the missing bytes
    (the cached range and the fetched ones merge, and the plan ran past them)."""
    db = open_db(tmp_path / "j.db")
    clean = CleanCache(db, Cache(tmp_path / "c"), max_size=1 << 30)
    size = 6 * MiB + 5
    await clean.store("f", size, 5 * MiB, expected(5 * MiB, size - 5 * MiB))
    drive = FakeDrive()
    rp = ReadPath(drive, clean, memory=16 * MiB)
    rp.stores = 100  # this disk keeps up: every chunk is kept
    async with trio.open_nursery() as nursery:
        await nursery.start(rp.run)
        got = bytearray()
        for off in range(0, size, 128 * KiB):
            got += await rp.read("f", size, off, 128 * KiB)
            while any(not c.stored for s in rp.streams.values() for c in s.chunks):  # noqa: ASYNC110
                await trio.sleep(0.001)  # every fetched chunk stored before the next read
        assert got == expected(0, size)
        nursery.cancel_scope.cancel()
    assert drive.fetched == 5 * MiB  # the kept tail came from the disk
    assert all(s + n <= 5 * MiB for s, n in drive.gets)
    db.close()
