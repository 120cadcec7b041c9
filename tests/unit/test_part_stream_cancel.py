"""A stop (a cancel) while a task of an upload's part stream fails: the stop goes on alone.

The part stream hashes its source in a worker thread beside the PUTs; a thread is not
abandoned at a cancel, so when the source was removed meanwhile (an unlink) its error
lands in the stream's nursery together with the cancel. Left in a group once the cancel
scope took its ``Cancelled``, that error escaped every handler of the upload scheduler
and took it down (model seed 114 in the README's test command)."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest
import trio

from panfs.upload_session import _unwrap_single


def _hash_gone(path: Path, go: threading.Event | None = None) -> None:
    """The source's hashing, finding the source removed (once ``go`` is set)."""
    if go is not None:
        go.wait(30)
    raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))


async def test_a_cancel_while_the_hashing_task_fails_is_only_a_cancel(tmp_path: Path) -> None:
    go = threading.Event()
    with trio.CancelScope() as stop, _unwrap_single():
        async with trio.open_nursery() as stream:
            stream.start_soon(trio.to_thread.run_sync, _hash_gone, tmp_path / "gone", go)
            await trio.lowlevel.checkpoint()  # the hashing thread has started
            stop.cancel()  # the daemon stops
            go.set()  # the hashing fails after the cancel (a thread is not abandoned)
            await trio.sleep_forever()
    assert stop.cancelled_caught  # and nothing else came out of the stream


async def test_one_failure_without_a_cancel_comes_out_as_itself(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No such file"), _unwrap_single():
        async with trio.open_nursery() as stream:
            stream.start_soon(trio.to_thread.run_sync, _hash_gone, tmp_path / "gone")
