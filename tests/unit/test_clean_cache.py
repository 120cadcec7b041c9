"""The clean cache on its own: ranges stored, files adopted, LRU eviction to the bound, and
the running byte count always equal to what the entries hold."""

from __future__ import annotations

import os
import random
from pathlib import Path

import trio

from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.metadata import open_db

KiB = 1 << 10


async def test_random_operations_keep_the_count_and_the_bound(tmp_path: Path) -> None:
    db = open_db(tmp_path / "j.db")
    cache = Cache(tmp_path / "c")
    clean = CleanCache(db, cache, max_size=256 * KiB)
    rng = random.Random(5)
    sizes = {f"f{i}": rng.randrange(1, 200 * KiB) for i in range(12)}
    for step in range(300):
        file_id = rng.choice(list(sizes))
        size = sizes[file_id]
        op = rng.random()
        if op < 0.6:
            off = rng.randrange(size)
            data = os.urandom(min(size - off, rng.randrange(1, 64 * KiB)))
            await clean.store(file_id, size, off, data)
            got = clean.read(file_id, size, off, len(data))
            assert got in (data, None)  # present unless evicted at once
        elif op < 0.8:
            path = cache.new_file(None)
            await trio.Path(path).write_bytes(b"u" * size)
            clean.adopt(file_id, path, size)
        else:
            clean.drop(file_id)
        assert clean.usage() == sum(e.present for e in clean.entries.values()), step
        assert clean.usage() <= 256 * KiB, step
    # and the count survives a restart, read back from the table once persisted
    await clean.persist()
    again = CleanCache(db, cache, max_size=256 * KiB)
    assert again.usage() == clean.usage()
    db.close()


async def test_a_file_larger_than_the_bound_is_never_kept(tmp_path: Path) -> None:
    """Neither its read ranges nor its uploaded version: keeping them would evict everything
    else, then the file's own start."""
    db = open_db(tmp_path / "j.db")
    cache = Cache(tmp_path / "c")
    clean = CleanCache(db, cache, max_size=256 * KiB)
    await clean.store("small", 100 * KiB, 0, b"s" * 100 * KiB)
    await clean.store("big", 300 * KiB, 0, b"b" * 64 * KiB)
    path = cache.new_file(None)
    await trio.Path(path).write_bytes(b"u" * 300 * KiB)
    clean.adopt("big2", path, 300 * KiB)
    assert not await trio.Path(path).exists()
    assert set(clean.entries) == {"small"}
    assert clean.read("small", 100 * KiB, 0, 10) == b"s" * 10
    assert clean.usage() == 100 * KiB
    # a pinned fetch (a file opened to be modified) is kept whatever its size
    await clean.store("big", 300 * KiB, 0, b"b" * 64 * KiB, pin=True)
    assert clean.read("big", 300 * KiB, 0, 64 * KiB) == b"b" * 64 * KiB
    db.close()
