"""Reads of bytes only the drive has: pipelined read-ahead under one memory budget.

Owns: per drive file a read stream (where the next sequential read is expected and
how far ahead it fetches: a window that doubles on sequential reads and collapses to
the read itself on a seek), the chunks of it fetched or in flight, and the one
``Budget`` every chunk held in memory counts against. Read-ahead GETs run in the
nursery ``run`` opens for the mount's lifetime, so the next ranges arrive while the
kernel consumes the current one; every fetched chunk goes to the clean cache (its
bytes written in a worker thread). A FUSE read copies only the bytes it returns.
Must not: know inodes or handles (the core does), hold SQL (the clean cache does),
or speak HTTP beyond ``RangeReader``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from panfs import direct
from panfs.clean_cache import CleanCache
from panfs.remote.models import Into

log = logging.getLogger(__name__)

MiB = 1 << 20
DEFAULT_MEMORY = 16 * MiB  # config key mount.read_memory
MIN_FETCH = 64 << 10  # a seek fetches the read itself, at least this much
FIRST_WINDOW = 256 << 10  # read-ahead after the first sequential read; doubles after each
CHUNK = 4 * MiB  # the largest single GET
NEAR = 2 * MiB  # reads this close to the expected offset are out of order, not a seek
GETS = 3  # GETs in flight per file: more only share the same bandwidth
STORES = 2  # whole chunks' worth of bytes written to the clean cache at once; more: not kept
STREAMS = 32  # files read at once that keep a stream
IDLE = 256  # reads of other files since its last one: a file's stream is idle


class Getter(Protocol):
    async def get(self, file_id: str, start: int, end: int) -> bytearray: ...

    async def get_into(self, file_id: str, start: int, buf: Into) -> int: ...


class Budget:
    """Bytes of chunks in memory (in flight or fetched, until consumed and stored).
    Read-ahead takes only what fits; a read the kernel waits for always gets its bytes
    (at most the FUSE read size, so the overshoot is bounded by the reads in flight)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0  # the largest ``used`` seen

    def try_take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.take(n)
        return True

    def take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def give(self, n: int) -> None:
        self.used -= n
        assert self.used >= 0


@dataclass(eq=False)
class Chunk:
    start: int
    end: int
    done: trio.Event = field(default_factory=trio.Event)
    buf: Into = field(default_factory=bytearray)  # its bytes: buf[:n]
    n: int = 0
    error: Exception | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    in_stream: bool = True  # later reads may still find it
    stored: bool = False  # the clean cache has its bytes (or will not take them)
    waiters: int = 0  # reads waiting for it: never cancelled under them
    released: bool = False  # its bytes went back to the budget


class Stream:
    """The window arithmetic of one file, without I/O: a read at the expected offset
    doubles the window (up to ``max_window``), a read near it keeps it, any other read
    is a seek and collapses it to nothing (the read alone is fetched)."""

    def __init__(self, max_window: int) -> None:
        self.max_window = max_window
        self.expected = 0  # where the next sequential read starts (a new file: at 0)
        self.window = 0
        self.chunks: list[Chunk] = []  # sorted by start, not overlapping
        self.gets = trio.CapacityLimiter(GETS)  # its GETs in flight at once
        self.last_read = 0  # ReadPath's read count at its last read

    def observe(self, off: int, end: int) -> bool:
        """Account for a read of [off, end); True if it was a seek."""
        seek = False
        if off == self.expected:
            self.window = min(self.max_window, max(FIRST_WINDOW, self.window * 2))
        elif not (self.expected - NEAR <= off <= self.expected + NEAR):
            self.window, seek = 0, True
        self.expected = end if seek else max(self.expected, end)
        return seek

    def plan(
        self, off: int, end: int, limit: int
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Ranges to fetch now: (needed by this read, read-ahead), not past ``limit``
        (the file's end or where the clean cache already has bytes). Read-ahead is sent
        only once half the window (or a whole chunk) is missing, so a long read becomes
        few large GETs, not one small GET per FUSE read."""
        target = min(limit, max(end, off + self.window, off + MIN_FETCH))
        needed: list[tuple[int, int]] = []
        gaps: list[tuple[int, int]] = []
        pos = off
        for c in self.chunks:
            if c.end <= pos:
                continue
            if c.start >= target:
                break
            if c.start > pos:
                gaps.append((pos, c.start))
            pos = max(pos, c.end)
        if pos < target:
            gaps.append((pos, target))
        ahead: list[tuple[int, int]] = []
        for s, e in gaps:
            if s < end:  # this read waits for it (read-ahead may follow in the budget)
                cut = min(e, max(end, s + MIN_FETCH))
                needed += _pieces(s, cut)
                s = cut
            if s < e:
                ahead.append((s, e))
        missing = sum(e - s for s, e in ahead)
        if ahead and (needed or missing >= min(CHUNK, self.window // 2) or ahead[-1][1] == limit):
            pieces = [p for s, e in ahead for p in _pieces(s, e)]
            last = pieces[-1]
            if len(pieces) > 1 and last[1] - last[0] < CHUNK and last[1] != limit:
                pieces.pop()  # a short tail waits to be part of a whole chunk
            return needed, pieces
        return needed, []


def _failed(c: Chunk) -> bool:
    return c.done.is_set() and c.error is not None


def _the(chunk: Chunk) -> Callable[[Chunk], bool]:
    return lambda c: c is chunk


def _pieces(start: int, end: int) -> list[tuple[int, int]]:
    return [(s, min(end, s + CHUNK)) for s in range(start, end, CHUNK)]


class ReadPath:
    def __init__(
        self, reader: Getter, clean: CleanCache | None, memory: int = DEFAULT_MEMORY
    ) -> None:
        self.reader = reader
        self.clean = clean
        self.budget = Budget(memory)
        self.streams: OrderedDict[str, Stream] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self._spare: list[Into] = []  # released CHUNK buffers, within the budget
        self._storing = 0  # bytes being written to the clean cache
        self.stores = STORES
        self._reads = 0  # reads served: a stream not read in the last IDLE is idle
        self.not_cached = 0  # bytes fetched while the cache disk lagged: not kept

    async def run(
        self,
        memory: int | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the read-ahead tasks for as long as the mount lives (until cancelled).
        Without it, reads still work: each fetches what it needs, with no read-ahead."""
        if memory is not None:
            self.budget.limit = memory
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for file_id in list(self.streams):
                self._drop_stream(file_id)
            log.info(
                "reads: %d of drive bytes, %s GETs of %s bytes in all (%d not cached: "
                "the disk lagged); read-ahead memory peaked at %d bytes",
                self._reads, getattr(self.reader, "gets", 0), getattr(self.reader, "fetched", 0),
                self.not_cached, self.budget.peak,
            )  # fmt: skip

    # -- reading -------------------------------------------------------------------------
    async def read(
        self, file_id: str, total: int, off: int, size: int, *, retry: bool = True
    ) -> bytes | memoryview:
        """The bytes [off, off+size) ∩ file, from the clean cache or the drive. A failed
        GET is sent again once, by the read that needs its bytes. A read within one chunk
        is a view of its buffer, not a copy: valid until the caller's next checkpoint (the
        buffer may then take another GET's bytes; pyfuse3 copies a reply out at once)."""
        end = min(total, off + size)
        if off >= end:
            return b""
        stream = self._stream(file_id)
        held = any(c.start <= off < c.end for c in stream.chunks)  # memory before disk
        if self.clean is not None and not held:
            cached = self.clean.read(file_id, total, off, size)
            if cached is not None:
                return cached
        if stream.observe(off, end):
            self._forget(stream, lambda c: c.end <= off or c.start >= end)
        limit = total
        if self.clean is not None:
            until = self.clean.next_present(file_id, off)
            limit = total if until is None or until <= off else min(total, until)
        needed, ahead = stream.plan(off, end, max(limit, end))
        if self.clean is not None:
            ahead = self._absent(file_id, ahead)
        inline = [self._start(stream, s, e, forced=True) for s, e in needed]
        if self._nursery is None:
            for chunk in inline:  # no read-ahead: the read fetches its own bytes
                await self._fetch(file_id, total, chunk)
        else:
            for chunk in inline:
                self._nursery.start_soon(self._fetch, file_id, total, chunk, stream.gets)
            for s, e in ahead:
                if not self._steal(file_id, e - s):
                    break
                chunk = self._start(stream, s, e, forced=False)
                self._nursery.start_soon(self._fetch, file_id, total, chunk, stream.gets)
        parts: list[memoryview] = []
        pos = off
        mine = [c for c in stream.chunks if c.end > off and c.start < end]
        for chunk in mine:
            chunk.waiters += 1  # neither cancelled nor released under this read
        try:
            for chunk in mine:
                if chunk.start > pos:
                    break  # cannot happen: the plan covers [off, end)
                await chunk.done.wait()
                if chunk.error is not None or (chunk.scope.cancelled_caught and not chunk.n):
                    # every chunk that failed goes (one dropped connection fails all in
                    # flight), then the read plans its bytes again, once
                    self._forget(stream, _failed)
                    self._forget(stream, _the(chunk))
                    if not retry:
                        raise chunk.error or trio.TooSlowError("read-ahead cancelled")
                    return await self.read(file_id, total, off, size, retry=False)
                have = chunk.start + chunk.n
                piece = memoryview(chunk.buf)[pos - chunk.start : min(end, have) - chunk.start]
                parts.append(piece)
                pos += len(piece)
                if have < chunk.end or pos >= end:
                    break  # done, or a chunk cut short: the file ended early on the drive
        finally:
            for chunk in mine:
                chunk.waiters -= 1
                self._release(chunk)
        # chunks wholly behind this read are done with (the kernel keeps the pages it read)
        self._forget(stream, lambda c: c.end <= off and c.done.is_set())
        return parts[0] if len(parts) == 1 else b"".join(parts)  # the join copies

    async def fetch(self, file_id: str, total: int, off: int, length: int) -> bytes | bytearray:
        """One GET of [off, off+length) ∩ file, kept in the clean cache, pinned (a file
        fetched whole before it is modified in place)."""
        n = max(0, min(total, off + length) - off)
        self.budget.take(n)  # counted like any chunk in memory
        try:
            data = await self.reader.get(file_id, off, off + n)
            if self.clean is not None:
                await self.clean.store(file_id, total, off, data, pin=True)
        finally:
            self.budget.give(n)
        return data

    # -- chunks --------------------------------------------------------------------------
    def _absent(self, file_id: str, ahead: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Read-ahead trimmed to bytes the clean cache does not have: a read served from
        memory (so not looked up on disk) may plan past ranges kept by an earlier mount."""
        assert self.clean is not None
        out: list[tuple[int, int]] = []
        for s, e in ahead:
            s = self.clean.gap_from(file_id, s)
            until = self.clean.next_present(file_id, s)
            e = e if until is None else min(e, until)
            if s < e:
                out.append((s, e))
        return out

    def _stream(self, file_id: str) -> Stream:
        self._reads += 1
        stream = self.streams.get(file_id)
        if stream is None:
            stream = self.streams[file_id] = Stream(self.budget.limit)
            while len(self.streams) > STREAMS:
                self._drop_stream(next(iter(self.streams)))
        self.streams.move_to_end(file_id)
        stream.last_read = self._reads
        # files read at once share the budget evenly
        active = sum(1 for s in self.streams.values() if not self._idle(s))
        stream.max_window = max(MIN_FETCH, self.budget.limit // max(1, active))
        stream.window = min(stream.window, stream.max_window)
        return stream

    def _idle(self, stream: Stream) -> bool:
        return self._reads - stream.last_read > IDLE

    def _start(self, stream: Stream, start: int, end: int, *, forced: bool) -> Chunk:
        if forced:
            self.budget.take(end - start)
        chunk = Chunk(start, end)
        stream.chunks.append(chunk)
        stream.chunks.sort(key=lambda c: c.start)
        return chunk

    def _steal(self, file_id: str, n: int) -> bool:
        """Take ``n`` bytes for read-ahead of ``file_id``; if they do not fit, the
        read-ahead of files no longer being read gives way (least recently read first)."""
        for other in list(self.streams):
            if self.budget.limit - self.budget.used >= n or other == file_id:
                break
            if self._idle(self.streams[other]):
                self._drop_stream(other)
        return self.budget.try_take(n)

    async def _fetch(
        self, file_id: str, total: int, chunk: Chunk, gets: trio.CapacityLimiter | None = None
    ) -> None:
        chunk.buf = self._buffer(chunk.end - chunk.start)
        with chunk.scope:
            try:
                if gets is None:
                    chunk.n = await self.reader.get_into(file_id, chunk.start, chunk.buf)
                else:
                    async with gets:
                        chunk.n = await self.reader.get_into(file_id, chunk.start, chunk.buf)
            except Exception as e:  # the read waiting for it raises it; read-ahead forgets
                chunk.error = e
        chunk.done.set()
        lag = self._storing + chunk.n > self.stores * CHUNK and self._storing > 0
        if chunk.n and self.clean is not None and lag:
            self.not_cached += chunk.n  # the disk is slower than the wire: reads go first
        elif chunk.n and self.clean is not None:
            self._storing += chunk.n
            data = memoryview(chunk.buf)[: chunk.n]
            try:
                await self.clean.store(file_id, total, chunk.start, data)
            except Exception:
                log.exception("not caching a range of %s", file_id)
            finally:
                data.release()
                self._storing -= chunk.n
        chunk.stored = True
        self._release(chunk)

    def _buffer(self, n: int) -> Into:
        """A buffer for a GET, page-aligned (the clean cache writes it past the page cache):
        whole chunks reuse the buffers of released ones."""
        if n == CHUNK and self._spare:
            return self._spare.pop()
        return direct.buffer(n)

    def _release(self, chunk: Chunk) -> None:
        if not chunk.released and chunk.stored and not chunk.in_stream and not chunk.waiters:
            chunk.released = True
            buf, chunk.buf = chunk.buf, bytearray()
            if len(buf) == CHUNK and len(self._spare) < self.budget.limit // CHUNK:
                self._spare.append(buf)
            self.budget.give(chunk.end - chunk.start)

    def _forget(self, stream: Stream, which: Callable[[Chunk], bool]) -> None:
        keep: list[Chunk] = []
        for c in stream.chunks:
            if which(c):
                c.in_stream = False
                if not c.done.is_set() and not c.waiters:
                    c.scope.cancel()  # nobody waits for it any more (a waiter holds its own)
                self._release(c)
            else:
                keep.append(c)
        stream.chunks = keep

    def _drop_stream(self, file_id: str) -> None:
        stream = self.streams.pop(file_id, None)
        if stream is not None:
            self._forget(stream, lambda c: True)
