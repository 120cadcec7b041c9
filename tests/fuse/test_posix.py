"""Real-mount behaviour: what cp, rsync, tar and friends need, checked on the drive itself."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader

pytestmark = pytest.mark.fuse


def _data(n: int, seed: int = 1) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[seed : seed + n] if n else b""


def _source(tmp: Path, name: str, n: int, seed: int = 1) -> Path:
    p = tmp / name
    with open(p, "wb") as f:
        block = os.urandom(1 << 20) if n > (1 << 20) else _data(n, seed)
        left, i = n, 0
        while left > 0:  # every MiB differs: a shifted part cannot pass for the right one
            chunk = (i.to_bytes(8, "little") + block[8:])[:left] if n > (1 << 20) else block
            f.write(chunk[:left])
            left -= len(chunk[:left])
            i += 1
    return p


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest().upper()


def test_cp_1gib_file_lands_on_drive_byte_identical(mounted: Mounted, tmp_path: Path) -> None:
    src = _source(tmp_path, "big.bin", 1 << 30)
    subprocess.run(["cp", str(src), str(mounted.path / "big.bin")], check=True)
    # visible at once with its local size, before the upload finished
    assert (mounted.path / "big.bin").stat().st_size == src.stat().st_size
    mounted.wait_idle()
    meta = DriveReader(mounted.drive).get("/big.bin")
    assert meta is not None
    want = _sha1(src)
    assert (meta["size"], meta["content_hash"].upper()) == (1 << 30, want)  # the drive's SHA-1
    assert _sha1(mounted.path / "big.bin") == want
    received = mounted.drive.stats()["part_bytes_received"]
    assert received == 1 << 30  # nothing sent twice
    mounted.check_logs()


def test_mkdir_p_five_levels_and_listing(mounted: Mounted) -> None:
    deep = mounted.path / "a" / "b" / "c" / "d" / "e"
    subprocess.run(["mkdir", "-p", str(deep)], check=True)
    (deep / "f.txt").write_bytes(b"hello")
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert reader.read("/a/b/c/d/e/f.txt") == b"hello"
    assert sorted(os.listdir(mounted.path / "a" / "b")) == ["c"]


def test_rsync_tree_with_small_files_and_nested_folders(mounted: Mounted, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for i in range(40):
        d = tree / f"d{i % 4}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(_data(1000 + i * 37, i))
    _source(tree, "large.bin", 200 << 20)
    r = subprocess.run(
        ["rsync", "-a", f"{tree}/", f"{mounted.path}/tree/"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    for p in tree.rglob("*"):
        if p.is_file():
            rel = p.relative_to(tree).as_posix()
            assert reader.read(f"/tree/{rel}") == p.read_bytes(), rel
    # a second rsync finds nothing to do and leaves no temp files behind
    r = subprocess.run(
        ["rsync", "-a", "--itemize-changes", f"{tree}/", f"{mounted.path}/tree/"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not [n for n in os.listdir(mounted.path / "tree") if n.startswith(".")]


def test_tar_extract_into_mount(mounted: Mounted, tmp_path: Path) -> None:
    src = tmp_path / "t"
    (src / "x" / "y").mkdir(parents=True)
    (src / "x" / "one.txt").write_bytes(b"1" * 5000)
    (src / "x" / "y" / "two.txt").write_bytes(b"2" * 7000)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(src / "x", arcname="x")
    subprocess.run(["tar", "xf", str(archive), "-C", str(mounted.path)], check=True)
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert reader.read("/x/one.txt") == b"1" * 5000
    assert reader.read("/x/y/two.txt") == b"2" * 7000


def test_overwrite_existing_file(mounted: Mounted) -> None:
    f = mounted.path / "o.txt"
    f.write_bytes(b"old" * 1000)
    mounted.wait_idle()
    f.write_bytes(b"new!" * 10)
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert reader.read("/o.txt") == b"new!" * 10
    assert [i["name"] for i in reader.list("/")].count("o.txt") == 1


def test_rename_over_existing_file(mounted: Mounted) -> None:
    (mounted.path / "target").write_bytes(b"T" * 100)
    mounted.wait_idle()
    (mounted.path / "tmp").write_bytes(b"S" * 200)
    os.rename(mounted.path / "tmp", mounted.path / "target")
    assert (mounted.path / "target").read_bytes() == b"S" * 200
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert reader.read("/target") == b"S" * 200
    names = [i["name"] for i in reader.list("/")]
    assert names.count("target") == 1
    assert "tmp" not in names


def test_unlink_while_open_keeps_working(mounted: Mounted) -> None:
    f = mounted.path / "u.txt"
    f.write_bytes(b"abc" * 100)
    mounted.wait_idle()
    with open(f, "rb") as fh:
        os.unlink(f)
        assert not f.exists()
        assert fh.read() == b"abc" * 100
    assert DriveReader(mounted.drive).get("/u.txt") is None


def test_truncate_and_append(mounted: Mounted) -> None:
    f = mounted.path / "t.txt"
    f.write_bytes(b"0123456789")
    mounted.wait_idle()
    os.truncate(f, 4)
    with open(f, "ab") as fh:
        fh.write(b"XYZ")
    assert f.read_bytes() == b"0123XYZ"
    mounted.wait_idle()
    assert DriveReader(mounted.drive).read("/t.txt") == b"0123XYZ"


def test_two_writers_on_two_files(mounted: Mounted) -> None:
    a, b = mounted.path / "a.bin", mounted.path / "b.bin"
    with open(a, "wb") as fa, open(b, "wb") as fb:
        for i in range(64):
            fa.write(bytes([i]) * 4096)
            fb.write(bytes([255 - i]) * 4096)
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert reader.read("/a.bin") == b"".join(bytes([i]) * 4096 for i in range(64))
    assert reader.read("/b.bin") == b"".join(bytes([255 - i]) * 4096 for i in range(64))


def test_read_back_after_cache_dropped(mounted: Mounted, tmp_path: Path) -> None:
    src = _source(tmp_path, "r.bin", 12 << 20)
    shutil.copyfile(src, mounted.path / "r.bin")
    mounted.wait_idle()
    mounted.close()
    shutil.rmtree(mounted.cache_dir / "data")
    mounted.remount()
    assert (mounted.path / "r.bin").read_bytes() == src.read_bytes()


def test_rmdir_not_empty_links_and_special_files(mounted: Mounted) -> None:
    d = mounted.path / "dir"
    d.mkdir()
    (d / "f").write_bytes(b"x")
    with pytest.raises(OSError, match="not empty") as e:
        os.rmdir(d)
    assert e.value.errno == errno.ENOTEMPTY
    os.symlink("f", d / "link")
    assert os.readlink(d / "link") == "f"
    assert (d / "link").read_bytes() == b"x"
    with pytest.raises(PermissionError) as e:
        os.link(d / "f", d / "hard")
    assert e.value.errno == errno.EPERM
    with pytest.raises(PermissionError) as e:
        os.mkfifo(d / "fifo")
    assert e.value.errno == errno.EPERM
    os.mknod(d / "plain", 0o600 | stat.S_IFREG)
    assert (d / "plain").read_bytes() == b""
    for name in ("f", "link", "plain"):
        os.unlink(d / name)
    os.rmdir(d)
    assert not d.exists()
