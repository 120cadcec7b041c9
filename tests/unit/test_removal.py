"""Removing cache files while a mount runs: the name goes at once (nothing finds the file
again), its blocks are freed by ``Cache.free_removed``'s worker thread, never on the thread
that answers the kernel; what a killed run left to free is freed at the next start; without
the task (start-up, commands) a removal unlinks at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from panfs.cache import GONE, Cache


def _gone(c: Cache) -> list[str]:
    return sorted(os.listdir(c.data / GONE))


async def _until_freed(c: Cache) -> None:
    with trio.fail_after(30):  # a hang guard, not a speed limit
        while _gone(c):  # noqa: ASYNC110  (the worker thread has no event to wait on)
            await trio.sleep(0.01)


async def test_a_removed_file_goes_at_once_and_is_freed_by_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Cache(tmp_path / "c")
    paths = [c.new_file(None) for _ in range(5)]
    for p in paths:
        await trio.Path(p).write_bytes(b"x" * 100_000)
    unlinked: list[str] = []
    on_trio: list[str] = []
    real_unlink = os.unlink

    def unlink(path: str) -> None:
        (on_trio if trio.lowlevel.in_trio_run() else unlinked).append(path)
        real_unlink(path)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.free_removed)
        await trio.sleep(0.05)
        monkeypatch.setattr(os, "unlink", unlink)
        for p in paths:
            c.remove(p)
            assert not await trio.Path(p).exists()  # the name went at once
        c.remove(paths[0])  # again: nothing happens
        await _until_freed(c)
        nursery.cancel_scope.cancel()
    assert on_trio == []  # never on the thread that answers the kernel
    assert len(unlinked) == 5
    assert all(Path(u).parent == c.data / GONE for u in unlinked)


async def test_what_a_killed_run_left_is_freed_at_the_next_start(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    left = c.data / GONE / "abc"
    left.write_bytes(b"y" * 1000)
    again = Cache(tmp_path / "c")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(again.free_removed)
        await _until_freed(again)
        nursery.cancel_scope.cancel()
    assert not left.exists()


def test_without_the_task_a_removal_unlinks_at_once(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    p = c.new_file(None)
    c.remove(p)
    assert not os.path.exists(p)
    assert _gone(c) == []
    c.remove(str(tmp_path / "elsewhere"))  # a file that is not there: no error
