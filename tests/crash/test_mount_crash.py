"""SIGKILL the mount daemon at the worst moments; nothing written is lost or published half."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader
from tests.support.procs import PANFS, wait_for

pytestmark = [pytest.mark.fuse, pytest.mark.crash]

PART = 16 << 20


def _big(path: Path, size: int) -> str:
    h = hashlib.sha1()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            chunk = bytes([i & 0xFF]) + block[1:]
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest().upper()


def _status(m: Mounted) -> dict[str, object]:
    r = subprocess.run(
        [*PANFS, "status", "--json", "--config", str(m.config)], capture_output=True, text=True
    )
    assert r.returncode in (0, 3), r.stderr  # 3: a file is interrupted or failed
    data: dict[str, object] = json.loads(r.stdout)
    return data


@pytest.mark.slow
def test_kill_mid_upload_resumes_at_the_server_part(mounted: Mounted, tmp_path: Path) -> None:
    size = 1 << 30
    src = tmp_path / "g.bin"
    sha1 = _big(src, size)
    mounted.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 150}])
    subprocess.run(["cp", str(src), str(mounted.path / "g.bin")], check=True)
    wait_for(lambda: mounted.drive.stats()["parts_stored"] >= 3, "some parts stored", limit=300)
    mounted.kill()
    mounted.drive.set_faults([])
    mounted.remount()
    mounted.wait_idle()
    meta = DriveReader(mounted.drive).get("/g.bin")
    assert meta is not None
    assert meta["size"] == size
    assert meta["content_hash"].upper() == sha1
    received = mounted.drive.stats()["part_bytes_received"]
    assert received <= size + PART, f"re-sent {received - size} bytes"


def test_kill_while_cp_still_writing_leaves_it_interrupted(
    mounted: Mounted, tmp_path: Path
) -> None:
    target = mounted.path / "half.bin"
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         f"f = open({str(target)!r}, 'wb')\n"
         "import os\n"
         "f.write(b'x' * (4 << 20)); f.flush(); os.fsync(f.fileno())\n"
         "print('written', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "written"
        mounted.kill()
    finally:
        writer.kill()
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    mounted.remount()
    time.sleep(0.5)  # give a wrongly resumed upload the chance to show itself
    assert DriveReader(mounted.drive).get("/half.bin") is None
    files = _status(mounted)["files"]
    assert isinstance(files, list)
    interrupted = [f for f in files if f["state"] == "interrupted"]
    assert [f["path"] for f in interrupted] == ["/half.bin"]
    assert interrupted[0]["size"] == 4 << 20
    # it shows in the mount at the size it reached, and the user finishes it
    assert (mounted.path / "half.bin").stat().st_size == 4 << 20
    whole = tmp_path / "half.bin"
    whole.write_bytes(b"x" * (4 << 20) + os.urandom(2 << 20))
    r = subprocess.run(
        ["rsync", "--append-verify", str(whole), str(mounted.path / "half.bin")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    mounted.wait_idle()
    assert DriveReader(mounted.drive).read("/half.bin") == whole.read_bytes()
    assert not [f for f in _status(mounted)["files"] if f["state"] == "interrupted"]  # type: ignore[union-attr]


def test_kill_while_overwriting_keeps_old_version_whole(mounted: Mounted, tmp_path: Path) -> None:
    old = os.urandom(3 << 20)
    (mounted.path / "doc.bin").write_bytes(old)
    mounted.wait_idle()
    new_src = tmp_path / "new.bin"
    _big(new_src, 64 << 20)
    mounted.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 300}])
    subprocess.run(["cp", str(new_src), str(mounted.path / "doc.bin")], check=True)
    wait_for(lambda: mounted.drive.stats()["parts_stored"] >= 2, "some parts stored", limit=120)
    mounted.kill()
    started = time.monotonic()
    mounted.remount()
    assert time.monotonic() - started < 30  # "up within seconds"; generous on a busy machine
    reader = DriveReader(mounted.drive)
    assert reader.read("/doc.bin") == old  # the old version, whole, until the new one lands
    mounted.drive.set_faults([])
    mounted.wait_idle()
    assert reader.read("/doc.bin") == new_src.read_bytes()
    assert [i["name"] for i in reader.list("/")].count("doc.bin") == 1


@pytest.fixture
def small_cache_mount(tmp_path: Path, drive):  # type: ignore[no-untyped-def]
    base = tmp_path / "m"
    cache = base / "cache"  # all of it: cached bytes, the journal, the log
    cache.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(cache)], check=True)
    m = None
    try:
        m = Mounted(base, drive, cache={"min_free": "8MiB"})
        yield m
    finally:
        if m is not None:
            m.close()
        subprocess.run(["umount", "-l", str(cache)], check=False)


def test_cache_disk_full_gives_enospc_and_keeps_closed_files(small_cache_mount: Mounted) -> None:
    m = small_cache_mount
    m.drive.set_faults([{"op": "put_part", "action": "delay", "ms": 500}])
    (m.path / "small.txt").write_bytes(b"s" * 100_000)
    got = None
    try:
        with open(m.path / "huge.bin", "wb") as f:
            for _ in range(100):
                f.write(b"h" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        got = e.errno
    assert got == errno.ENOSPC
    # the journal still works on the full disk: the cut-off version is recorded as such
    status = _status(m)
    states = {f["path"]: f["state"] for f in status["files"]}  # type: ignore[index]
    assert states.get("/huge.bin") == "interrupted", status
    # the user removes the cut-off file: its cache file goes, and new files fit again
    (m.path / "huge.bin").unlink()
    assert shutil.disk_usage(m.cache_dir).free > 30 << 20
    (m.path / "after.txt").write_bytes(b"a" * 1000)
    m.drive.set_faults([])
    m.wait_idle()
    reader = DriveReader(m.drive)
    assert reader.read("/small.txt") == b"s" * 100_000
    assert reader.read("/after.txt") == b"a" * 1000
    assert reader.get("/huge.bin") is None  # nothing partial published as complete
    m.check_logs(allow=(r"not uploading /huge\.bin: a write failed \(cache disk full\)",))
