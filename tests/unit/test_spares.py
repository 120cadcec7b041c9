"""Spare cache files: empty files made ahead, in idle time, so that a CREATE opens one made
already instead of allocating an inode on the thread that answers the kernel. What must
hold: a spare is handed out once, empty, and is never a file something else refers to; the
making stops at the next CREATE and waits for a pause; a burst that takes them all makes the
next pool bigger; the task leaves no thread behind when cancelled."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from panfs import cache as cache_mod
from panfs.cache import Cache


def _files(c: Cache) -> set[str]:
    return {e.path for e in os.scandir(c.data) if e.is_file() and not e.name.startswith(".")}


async def _until(pred: object) -> None:
    with trio.fail_after(30):  # a hang guard, not a speed limit
        while not pred():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.01)  # (the thread that makes them has no event to wait on)


@contextlib.asynccontextmanager
async def _making(tmp_path: Path, wanted: int) -> AsyncIterator[Cache]:
    """A cache keeping ``wanted`` spares, made by the time it is yielded; stopped after."""
    c = Cache(tmp_path)
    c.spares_wanted = wanted
    async with trio.open_nursery() as n:
        n.start_soon(c.keep_spares)
        await _until(lambda: len(_files(c)) == wanted)
        yield c
        n.cancel_scope.cancel()


def _take(c: Cache) -> str:
    path, fd = c.create()
    os.close(fd)
    return path


async def test_creates_take_spares_each_once_and_empty(tmp_path: Path) -> None:
    async with _making(tmp_path, 8) as c:
        made = _files(c)
        got = []
        for _ in range(8):
            path, fd = c.create()
            assert os.fstat(fd).st_size == 0
            os.pwrite(fd, path.encode(), 0)  # each its own bytes: none handed out twice
            os.close(fd)
            got.append(path)
        assert set(got) == made
        assert len(got) == 8
        assert _take(c) not in made  # none left: a new one, made at once
        for p in got:
            assert await trio.Path(p).read_bytes() == p.encode()


async def test_the_making_waits_for_a_pause_and_a_drained_pool_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_mod, "SPARES_IDLE", 0.3)
    async with _making(tmp_path, 4) as c:
        first = _files(c)
        taken: set[str] = set()
        for _ in range(6):  # a burst: one CREATE every 0.1 s takes all four, then two more
            taken.add(_take(c))
            await trio.sleep(0.1)
            # none made while the burst goes on (they would wait on the folder's lock)
            assert _files(c) - first - taken == set()
        assert c.spares_wanted == 8  # drained by a burst: twice as many next time
        await _until(lambda: len(_files(c) - taken) == 8)


async def test_writing_holds_the_making_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a pause ten times the writes' interval: a loaded machine's late wake-up is not a pause
    monkeypatch.setattr(cache_mod, "SPARES_IDLE", 1.0)
    async with _making(tmp_path, 4) as c:
        taken = {_take(c) for _ in range(4)}
        for _ in range(10):  # a big file written (or read into the cache) for a second
            c.writing()
            await trio.sleep(0.1)
            assert _files(c) == taken  # none made meanwhile
        await _until(lambda: len(_files(c) - taken) >= 4)  # made once the writing paused


async def test_cancelled_while_making_the_thread_is_waited_for(tmp_path: Path) -> None:
    c = Cache(tmp_path)
    c.spares_wanted = 100_000  # far more than are made before the cancel
    with trio.move_on_after(0.3):
        await c.keep_spares()
    # the thread has ended: nothing is made after the task returned
    before = len(_files(c))
    await trio.sleep(0.2)
    assert len(_files(c)) == before
    assert before < 100_000


def test_empty_files_nothing_refers_to_are_adopted_as_spares(tmp_path: Path) -> None:
    c = Cache(tmp_path)
    p = c.data / "left-by-a-kill"
    p.write_bytes(b"")
    c.adopt_spare(str(p))
    assert _take(c) == str(p)
