"""Hashes of local file ranges, computed in worker threads (hashlib and xxhash release the GIL).

Owns: MD5 / SHA-1 / xxh3 of a byte range of a file, read in 1 MiB chunks, and
the streaming part body that hashes what it sends. Must not: talk to the drive.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio
import xxhash

CHUNK = 1 << 20


def _range_hash(
    path: str, offset: int, length: int, algos: tuple[str, ...], hs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Hashers of ``algos`` fed [offset, offset+length); ``hs`` to go on feeding given ones."""
    if hs is None:
        hs = {a: (xxhash.xxh3_64() if a == "xxh3" else hashlib.new(a)) for a in algos}
    fd = os.open(path, os.O_RDONLY)
    try:
        pos, end = offset, offset + length
        while pos < end:
            data = os.pread(fd, min(CHUNK * 8, end - pos), pos)
            if not data:
                raise OSError(f"{path} is shorter than expected")
            for h in hs.values():
                h.update(data)
            pos += len(data)
    finally:
        os.close(fd)
    return hs


async def range_digests(path: str, offset: int, length: int, *algos: str) -> dict[str, str]:
    hs = await trio.to_thread.run_sync(_range_hash, path, offset, length, algos)
    return {a: h.hexdigest().upper() for a, h in hs.items()}


async def sha1_hasher(path: str, length: int, base: Any = None, covered: int = 0) -> Any:
    """A SHA-1 object over the first ``length`` bytes (to continue feeding). Given ``base``,
    a SHA-1 over the first ``covered`` ≤ ``length`` bytes, only the bytes after those are
    read (a copy of ``base`` goes on)."""
    if base is None or covered > length:
        base, covered = None, 0
    start = {"sha1": base.copy()} if base is not None else None
    hs = await trio.to_thread.run_sync(
        _range_hash, path, covered, length - covered, ("sha1",), start
    )
    return hs["sha1"]


async def read_at(path: str, offset: int, length: int) -> bytes:
    def read() -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    return await trio.to_thread.run_sync(read)


@dataclass
class PartBody:
    """One part's bytes for a PUT, read in 1 MiB chunks and hashed (MD5, xxh3, and SHA-1 when
    a running hasher is given) on the way. ``produce`` reads and hashes in a worker thread
    and hands chunks over a channel; ``consume`` is the request body. Run in one nursery,
    the next chunk is read and hashed while the previous one is on the wire."""

    path: str
    offset: int
    length: int
    sha1: Any = None  # a hashlib sha1 copy to feed, or None
    md5: Any = field(default_factory=hashlib.md5)
    xxh3: Any = field(default_factory=xxhash.xxh3_64)
    sent: int = 0

    def _read(self, fd: int, pos: int, n: int) -> bytes:
        data = os.pread(fd, n, pos)
        self.md5.update(data)
        self.xxh3.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        return data

    async def produce(self, send: trio.MemorySendChannel[bytes]) -> None:
        async with send:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                pos, end = self.offset, self.offset + self.length
                while pos < end:
                    data = await trio.to_thread.run_sync(self._read, fd, pos, min(CHUNK, end - pos))
                    if not data:
                        raise OSError(f"{self.path} shrank while uploading")
                    pos += len(data)
                    await send.send(data)
            finally:
                os.close(fd)

    async def consume(self, receive: trio.MemoryReceiveChannel[bytes]) -> AsyncIterator[bytes]:
        async with receive:
            async for data in receive:
                self.sent += len(data)
                yield data
