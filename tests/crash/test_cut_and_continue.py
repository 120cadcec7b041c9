"""A 4 GiB copy cut by a daemon SIGKILL at about half, continued with ``rsync --append-verify``.

Issue 8: continuing an interrupted version writes into its own cache file (nothing on
the drive depends on those bytes), so the cache never holds more than the file plus
one part, and the upload sends the file once (plus at most the part in flight).
CI copies 64 MiB in 4 MiB parts (4 GiB in 16 MiB parts with ``PANFS_TEST_FULL=1``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from tests.crash.conftest import Mounted
from tests.support.core import test_sections
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import require_fuse, wait_for
from tests.support.scale import pick

pytestmark = [pytest.mark.fuse, pytest.mark.crash, pytest.mark.slow]

MiB = 1 << 20
SIZE = pick(4096, 64) * MiB
PART = pick(16, 4) * MiB


def _make_source(path: Path, mib: int) -> str:
    """``mib`` MiB at disk speed: one random MiB, each copy stamped with its index. SHA-1."""
    block = bytearray(os.urandom(MiB))
    sha = hashlib.sha1()
    with open(path, "wb") as f:
        for i in range(mib):
            block[:8] = struct.pack("<Q", i)
            sha.update(block)
            f.write(block)
    return sha.hexdigest().upper()


def _disk_use(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class PeakSampler:
    """Samples the disk use of a folder in a thread until stopped; keeps the peak."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _disk_use(self.root))
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _disk_use(self.root))
        return self.peak


def _largest_cache_file(cache: Path) -> int:
    sizes = [0]
    for dirpath, _dirs, files in os.walk(cache):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                sizes.append(os.stat(os.path.join(dirpath, name)).st_size)
    return max(sizes)


def test_4gib_copy_cut_at_half_continues_with_rsync_append_verify(
    tmp_path: Path, drive: DriveServer
) -> None:
    require_fuse()
    src = tmp_path / "big.bin"
    sha1 = _make_source(src, SIZE // MiB)
    m = Mounted(tmp_path / "m", drive, **test_sections(upload={"part_size": PART}))
    sampler = PeakSampler(m.cache_dir)
    cp: subprocess.Popen[bytes] | None = None
    try:
        drive.reset_stats()
        # cp reads the source through a pipe we feed: it is cut at half, whatever the speeds
        cp = subprocess.Popen(["cp", "/dev/stdin", str(m.path / "big.bin")],
                              stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        assert cp.stdin is not None
        with open(src, "rb") as f:
            for _ in range(SIZE // 2 // MiB):
                cp.stdin.write(f.read(MiB))
            cp.stdin.flush()
            wait_for(lambda: _largest_cache_file(m.cache_dir) >= SIZE // 2, "half the copy",
                     cp, limit=600)  # type: ignore[arg-type]  # fmt: skip
            m.kill()
            with contextlib.suppress(BrokenPipeError):  # cp may have gone already
                cp.stdin.write(f.read(MiB))
            with contextlib.suppress(BrokenPipeError):  # closes the pipe even if a flush fails
                cp.stdin.close()
        cp.wait(60)
        assert cp.returncode != 0  # cut: cp saw the mount go away
        m.remount()
        r = subprocess.run(
            ["rsync", "--append-verify", str(src), str(m.path / "big.bin")],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert r.returncode == 0, r.stderr
        m.umount_wait()
        peak = sampler.stop()
        meta = DriveReader(drive).get("/big.bin")
        assert meta is not None
        assert (meta["size"], meta["content_hash"].upper()) == (SIZE, sha1)
        sent = drive.stats()["part_bytes_received"]
        print(f"peak cache {peak / MiB:.0f} MiB, part bytes received {sent / MiB:.0f} MiB")
        assert peak <= SIZE + PART, (
            f"cache peaked at {peak / MiB:.0f} MiB for a {SIZE // MiB} MiB file"
        )
        assert sent <= SIZE + PART, f"{sent / MiB:.0f} MiB sent for a {SIZE // MiB} MiB file"
    finally:
        sampler.stop()
        if cp is not None and cp.poll() is None:
            cp.kill()
            cp.wait()
        m.close()
