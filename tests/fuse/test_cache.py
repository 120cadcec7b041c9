"""The cache under a real mount: clean data bounded by ``cache.max_size`` (least recently
used goes first), dirty data never evicted, downloaded ranges kept across remounts, and
attributes the drive cannot hold kept locally across remounts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import require_fuse, wait_for

pytestmark = pytest.mark.fuse

MiB = 1 << 20


@pytest.fixture
def small_cache(tmp_path: Path, drive: DriveServer) -> Iterator[Mounted]:
    require_fuse()
    m = Mounted(tmp_path / "m", drive, cache={"max_size": "10MiB"})
    try:
        yield m
    finally:
        m.close()


def _cache_bytes(m: Mounted) -> int:
    """Bytes actually allocated by cache files (sparse files count what they hold)."""
    return sum(e.stat().st_blocks * 512 for e in os.scandir(m.cache_dir / "data") if e.is_file())


def _downloaded(m: Mounted) -> int:
    return int(m.drive.stats()["download_bytes_sent"])


def _on_the_drive_only(m: Mounted, name: str, size: int) -> bytes:
    """Write a file, let it upload, then remount without any cached copy of it."""
    data = os.urandom(size)
    (m.path / name).write_bytes(data)
    m.wait_idle()
    m.close()
    for e in os.scandir(m.cache_dir / "data"):
        os.unlink(e.path)  # the clean copy is gone: reads must go to the drive
    m.remount()
    return data


def test_clean_data_is_bounded_and_evicted_lru(small_cache: Mounted) -> None:
    m = small_cache
    blobs = {f"f{i}.bin": os.urandom(4 * MiB) for i in range(4)}
    for name, data in blobs.items():
        (m.path / name).write_bytes(data)
    m.wait_idle()
    # 16 MiB uploaded; uploaded versions stay as clean cache only up to the bound (the last
    # one is adopted and the oldest evicted just after its job is marked done)
    wait_for(lambda: _cache_bytes(m) <= 10 * MiB + MiB, "eviction to the bound", m.proc)  # type: ignore[arg-type]
    m.close()  # and the kernel's page cache with it
    m.remount()
    before = _downloaded(m)
    assert (m.path / "f3.bin").read_bytes() == blobs["f3.bin"]  # newest: still cached
    assert _downloaded(m) == before
    assert (m.path / "f0.bin").read_bytes() == blobs["f0.bin"]  # oldest: evicted, fetched
    assert _downloaded(m) - before == 4 * MiB
    assert _cache_bytes(m) <= 10 * MiB + MiB


def test_downloaded_ranges_are_kept_across_remounts(small_cache: Mounted) -> None:
    m = small_cache
    data = _on_the_drive_only(m, "r.bin", 6 * MiB + 5)
    with open(m.path / "r.bin", "rb") as f:
        f.seek(5 * MiB)
        assert f.read(MiB) == data[5 * MiB : 6 * MiB]
    fetched = _downloaded(m)
    assert 0 < fetched <= 1 * MiB + 5  # read-ahead stops at the end of the file
    m.close()
    m.remount()
    with open(m.path / "r.bin", "rb") as f:
        f.seek(5 * MiB)
        assert f.read(MiB) == data[5 * MiB : 6 * MiB]  # from the cache now
        assert _downloaded(m) == fetched
        f.seek(0)
        assert f.read() == data  # the rest comes from the drive
    # once, but for one read-ahead chunk at most: a range whose cache write lagged behind the
    # wire is served without being kept (the read path never waits for the cache disk)
    assert len(data) <= _downloaded(m) <= len(data) + MiB


def test_dirty_data_is_never_evicted(small_cache: Mounted) -> None:
    m = small_cache
    m.drive.set_faults([{"op": "put_part", "action": "status", "status": 503, "body": "busy"}])
    blobs = {f"d{i}.bin": os.urandom(4 * MiB) for i in range(4)}
    for name, data in blobs.items():
        (m.path / name).write_bytes(data)
    # nothing can upload: all 16 MiB are dirty, over the 10 MiB bound, and all stay
    assert _cache_bytes(m) >= 16 * MiB
    m.close()
    m.remount()
    for name, data in blobs.items():
        assert (m.path / name).read_bytes() == data
    m.drive.set_faults([])
    m.wait_idle()
    reader = DriveReader(m.drive)
    for name, data in blobs.items():
        assert reader.read("/" + name) == data


def test_attributes_survive_remount(mounted: Mounted, tmp_path: Path) -> None:
    m = mounted
    (m.path / "dir").mkdir()
    f = m.path / "dir" / "f.txt"
    f.write_bytes(b"x" * 1000)
    # set while the version waits for its upload, kept when it lands
    os.chmod(f, 0o640)
    os.chown(f, 1234, 5678)
    os.utime(f, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    os.chmod(m.path / "dir", 0o750)
    m.wait_idle()
    g = m.path / "dir" / "g.txt"  # set after the upload: keyed by the drive's file
    g.write_bytes(b"y")
    m.wait_idle()
    os.chmod(g, 0o600)
    os.utime(g, ns=(1_400_000_000_000_000_000, 1_300_000_000_000_000_000))
    m.close()
    m.remount()
    st = os.stat(f)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime_ns == 1_500_000_000_987_654_321
    assert stat.S_IMODE(os.stat(m.path / "dir").st_mode) == 0o750
    sg = os.stat(g)
    assert stat.S_IMODE(sg.st_mode) == 0o600
    assert sg.st_mtime_ns == 1_300_000_000_000_000_000


def test_append_to_a_file_only_on_the_drive(small_cache: Mounted) -> None:
    m = small_cache
    data = _on_the_drive_only(m, "a.bin", 3 * MiB + 17)
    with open(m.path / "a.bin", "ab") as f:  # fetched whole first, then appended to
        f.write(b"tail")
    with open(m.path / "a.bin", "r+b") as f:  # and modified in place
        f.seek(10)
        f.write(b"MID")
    want = data[:10] + b"MID" + data[13:] + b"tail"
    m.wait_idle()
    assert DriveReader(m.drive).read("/a.bin") == want
    assert [i["name"] for i in DriveReader(m.drive).list("/")] == ["a.bin"]


def test_version_opened_while_the_previous_one_uploads(mounted: Mounted) -> None:
    """Version 2 is opened while version 1 uploads and closed after it landed: version 2
    replaces version 1 on the drive, and the name is never there twice."""
    m = mounted
    m.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 300}])
    v1 = os.urandom(2 * MiB)
    (m.path / "f.bin").write_bytes(v1)
    reader = DriveReader(m.drive)
    with open(m.path / "f.bin", "r+b") as f:
        # version 1 lands while version 2 is open
        wait_for(lambda: reader.get("/f.bin") is not None, "version 1 on the drive", m.proc)
        assert reader.read("/f.bin") == v1
        f.seek(0)
        f.write(b"v2")
    m.wait_idle()
    assert reader.read("/f.bin") == b"v2" + v1[2:]
    assert [i["name"] for i in reader.list("/")] == ["f.bin"]


def test_a_file_larger_than_the_bound_streams_and_evicts_nothing(small_cache: Mounted) -> None:
    """A cold read of a 12 MiB drive file under a 10 MiB bound: its bytes are right, none of
    them is kept (a later read fetches it again), and the small file cached before it stays
    cached (reading it fetches nothing)."""
    m = small_cache
    big = _on_the_drive_only(m, "big.bin", 12 * MiB + 3)
    small = os.urandom(2 * MiB)
    (m.path / "small.bin").write_bytes(small)
    m.wait_idle()  # its uploaded version is its clean copy now
    kept = _cache_bytes(m)
    assert kept >= 2 * MiB
    m.close()
    m.remount()
    before = _downloaded(m)
    assert (m.path / "big.bin").read_bytes() == big
    assert _downloaded(m) - before == len(big)
    assert _cache_bytes(m) == kept  # nothing of it kept, nothing evicted for it
    assert (m.path / "small.bin").read_bytes() == small
    assert _downloaded(m) - before == len(big)  # the small file came from the cache
    m.close()
    m.remount()
    before = _downloaded(m)
    assert (m.path / "big.bin").read_bytes() == big
    assert _downloaded(m) - before == len(big)  # streamed from the drive again
