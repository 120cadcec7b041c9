"""Cache writes past the page cache (``panfs.direct``): whatever the offsets, lengths and
buffers, the file ends up holding exactly the bytes written; the aligned middle of a
page-aligned buffer goes with ``O_DIRECT``; a file system that refuses ``O_DIRECT`` gets plain
writes, and a real write error is raised, not swallowed."""

from __future__ import annotations

import errno
import logging
import os
import random
from pathlib import Path

import pytest

from panfs import direct
from panfs.direct import ALIGN, Direct


def _direct_works(folder: Path) -> bool:
    try:
        fd = os.open(folder / "probe", os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


def _apply(d: Direct, path: Path, want: bytearray, seed: int, writes: int) -> None:
    rng = random.Random(seed)
    for _ in range(writes):
        aligned = rng.random() < 0.6
        off = rng.randrange(0, 64) * ALIGN if aligned else rng.randrange(0, 64 * ALIGN)
        n = rng.choice([ALIGN, 3 * ALIGN, 16 * ALIGN, rng.randrange(1, 20 * ALIGN)])
        data = rng.randbytes(n)
        kind = rng.choice(["mmap", "view", "bytes"])
        if kind == "bytes":
            d.write_at(str(path), data, off)
        else:
            buf = direct.buffer(n + 2 * ALIGN)
            start = 0 if kind == "mmap" else rng.randrange(0, 2) * ALIGN + rng.randrange(0, 2)
            buf[start : start + n] = data
            d.write_at(str(path), memoryview(buf)[start : start + n], off)
        if len(want) < off + n:
            want.extend(bytes(off + n - len(want)))
        want[off : off + n] = data


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_leave_exactly_the_bytes_written(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "f"
    path.touch()
    d = Direct()
    want = bytearray()
    _apply(d, path, want, seed, 60)
    assert path.read_bytes() == bytes(want)
    assert d.direct_bytes + d.buffered_bytes > 0
    if _direct_works(tmp_path):
        assert d.enabled
        assert d.direct_bytes > 0  # the aligned writes of aligned buffers went past the cache


def test_an_aligned_buffer_at_an_aligned_offset_goes_whole_past_the_page_cache(
    tmp_path: Path,
) -> None:
    if not _direct_works(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    path = tmp_path / "f"
    path.touch()
    d = Direct()
    buf = direct.buffer(4 << 20)
    buf[:] = os.urandom(4 << 20)
    d.write_at(str(path), memoryview(buf)[: (4 << 20) - 100], 8 * ALIGN)
    assert (d.direct_bytes, d.buffered_bytes) == ((4 << 20) - ALIGN, ALIGN - 100)
    assert path.read_bytes() == bytes(8 * ALIGN) + bytes(buf[: (4 << 20) - 100])


def test_a_file_system_that_refuses_o_direct_gets_plain_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_open = os.open

    def refusing(path: str, flags: int, *a: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", refusing)
    caplog.set_level(logging.INFO, logger="panfs.direct")
    path = tmp_path / "f"
    path.touch()
    d = Direct()
    want = bytearray()
    _apply(d, path, want, 7, 30)
    assert path.read_bytes() == bytes(want)
    assert (d.enabled, d.direct_bytes) == (False, 0)
    assert [r.message for r in caplog.records if "O_DIRECT" in r.message] != []


def test_a_write_error_under_o_direct_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _direct_works(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    real_open, real_pwrite = os.open, os.pwrite
    directs: set[int] = set()

    def opening(path: str, flags: int, *a: int) -> int:
        fd = real_open(path, flags, *a)
        if flags & os.O_DIRECT:
            directs.add(fd)
        return fd

    def full(fd: int, data: memoryview, off: int) -> int:
        if fd in directs:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, off)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "pwrite", full)
    path = tmp_path / "f"
    path.touch()
    buf = direct.buffer(2 * ALIGN)
    with pytest.raises(OSError, match="No space left") as err:
        Direct().write_at(str(path), memoryview(buf), 0)
    assert err.value.errno == errno.ENOSPC


def test_a_whole_aligned_chunk_opens_the_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read path's common case (a 4 MiB chunk at an aligned offset): one open, with
    ``O_DIRECT``, and no plain one beside it."""
    if not _direct_works(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    path = tmp_path / "f"
    path.touch()
    opens: list[int] = []
    real_open = os.open

    def counting(p: str, flags: int, *a: int) -> int:
        opens.append(flags & os.O_DIRECT)
        return real_open(p, flags, *a)

    monkeypatch.setattr(os, "open", counting)
    buf = direct.buffer(4 << 20)
    Direct().write_at(str(path), memoryview(buf), 4 << 20)
    assert opens == [os.O_DIRECT]
