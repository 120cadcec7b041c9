"""Reading a file only the drive has, through a real mount: sequential and random reads
return the drive's bytes exactly; random reads fetch small ranges, not whole windows."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from panfs.readpath import MIN_FETCH
from tests.fuse.conftest import Mounted

pytestmark = pytest.mark.fuse

KiB, MiB = 1 << 10, 1 << 20
PAGE = 4 * KiB
RANDOM_READAHEAD = 128 * KiB  # the most the kernel reads ahead of a read found random


def _forget_local_copies(m: Mounted) -> None:
    """Remount with no cached byte of any file: reads must go to the drive."""
    m.close()
    for e in os.scandir(m.cache_dir / "data"):
        os.unlink(e.path)
    m.remount()


def _downloaded(m: Mounted) -> int:
    return int(m.drive.stats()["download_bytes_sent"])


def test_drive_only_file_reads_back_exactly(mounted: Mounted, tmp_path: Path) -> None:
    m = mounted
    size = 24 * MiB + 4321
    data = random.Random(1).randbytes(size)
    (m.path / "v.bin").write_bytes(data)
    m.wait_idle()
    _forget_local_copies(m)
    # sequential, as cat does
    with open(m.path / "v.bin", "rb") as f:
        got = bytearray()
        while chunk := f.read(1 * MiB):
            got += chunk
    assert got == data
    assert _downloaded(m) == size  # each byte fetched once, none past the end
    _forget_local_copies(m)
    before = _downloaded(m)
    # random, as a video seek or `tail` does
    rng = random.Random(2)
    fd = os.open(m.path / "v.bin", os.O_RDONLY)
    try:
        reads = 40
        asked = 0
        for _ in range(reads):
            off, n = rng.randrange(size), rng.choice((1, 4 * KiB, 64 * KiB, 300 * KiB))
            asked += n
            assert os.pread(fd, n, off) == data[off : off + n], (off, n)
        assert os.pread(fd, 100, size - 50) == data[-50:]  # the tail
        asked += 50
    finally:
        os.close(fd)
    # small ranges, not a window per read: each read fetches what it asked for, plus at most
    # the kernel's read-ahead of a random read (128 KiB, whatever the mount's window), the
    # smallest fetch and a page at either end
    fetched = _downloaded(m) - before
    assert fetched <= asked + (reads + 1) * (RANDOM_READAHEAD + MIN_FETCH + 2 * PAGE), fetched
    assert fetched < size // 2
    m.check_logs()
