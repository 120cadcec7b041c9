"""The POSIX tail everyday tools need (issue 8 point 3).

Symbolic links stored as small link files on the drive and shown as links, so
``rsync -a``, ``cp -a`` and ``tar x`` of a tree with links read back identical on a
fresh mount; hard links and special files EPERM, ``mknod`` of a regular file works;
folder times, link counts, ``renameat2`` flags; readdir offsets stable while the
folder changes between two ``getdents64`` calls.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import stat
import struct
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.scale import pick

pytestmark = pytest.mark.fuse

MiB = 1 << 20
LIBC = ctypes.CDLL(None, use_errno=True)
SYS_GETDENTS64 = {"x86_64": 217, "aarch64": 61}.get(platform.machine())
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4


def _big_file(path: Path, mib: int) -> None:
    """``mib`` MiB fast: one random MiB repeated, each copy stamped with its index."""
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as f:
        for i in range(mib):
            block[:8] = struct.pack("<Q", i)
            f.write(block)


def _source_tree(root: Path) -> None:
    (root / "d1" / "d2" / "d3").mkdir(parents=True)
    (root / "top.txt").write_text("top\n")
    (root / "d1" / "one.txt").write_text("one\n")
    (root / "d1" / "d2" / "d3" / "deep.txt").write_text("deep\n")
    _big_file(root / "d1" / "big.bin", pick(200, 32))
    os.symlink("top.txt", root / "to_file")  # relative, to a file
    os.symlink("d1/d2", root / "to_dir")  # relative, to a folder
    os.symlink("../../top.txt", root / "d1" / "d2" / "up")  # climbing out
    os.symlink("/etc/hostname", root / "absolute")  # absolute
    os.symlink("no/such/target", root / "d1" / "dangling")  # dangling


def _snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """relative path → (kind, content hash or link target), links not followed."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "")
            else:
                h = hashlib.sha1()
                with open(p, "rb") as f:
                    while chunk := f.read(4 * MiB):
                        h.update(chunk)
                out[rel] = ("file", h.hexdigest())
    return out


COPIERS = {
    "rsync": lambda src, dst: ["rsync", "-a", f"{src}/", f"{dst}/"],
    "cp": lambda src, dst: ["cp", "-a", f"{src}/.", f"{dst}/"],
    "tar": lambda src, dst: ["tar", "-x", "-f", f"{src}.tar", "-C", str(dst)],
}


@pytest.mark.parametrize("tool", list(COPIERS))
def test_tree_with_symlinks_copies_and_reads_back(
    mount: Callable[..., Mounted], tmp_path: Path, drive: DriveServer, tool: str
) -> None:
    """``rsync -a`` / ``cp -a`` / ``tar x`` of folders, links and a 200 MiB file: exit 0,
    the same tree (``readlink`` included) on a fresh mount of the drive."""
    src = tmp_path / "src"
    _source_tree(src)
    if tool == "tar":
        with tarfile.open(f"{src}.tar", "w") as t:
            for child in sorted(src.iterdir()):
                t.add(child, arcname=child.name)
    want = _snapshot(src)
    m = mount()
    dst = m.path / "tree"
    dst.mkdir()
    r = subprocess.run(COPIERS[tool](src, dst), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _snapshot(dst) == want
    m.umount_wait()
    # on the drive a link is a small file named with the link suffix (config default)
    names = DriveReader(drive).names("/tree")
    assert names.get("to_file.panfslink") == 1, names
    assert "to_file" not in names
    fresh = mount("fresh")  # its own cache dir: everything comes from the drive
    assert _snapshot(fresh.path / "tree") == want


def test_hard_links_are_eperm(mount: Callable[..., Mounted]) -> None:
    m = mount()
    (m.path / "f").write_bytes(b"x")
    with pytest.raises(PermissionError) as e:
        os.link(m.path / "f", m.path / "g")
    assert e.value.errno == errno.EPERM


def test_mknod_regular_file_works_special_files_eperm(mount: Callable[..., Mounted]) -> None:
    m = mount()
    os.mknod(m.path / "plain", stat.S_IFREG | 0o640)
    assert stat.S_ISREG(os.stat(m.path / "plain").st_mode)
    (m.path / "plain").write_bytes(b"data")
    assert (m.path / "plain").read_bytes() == b"data"
    for make in (
        lambda: os.mkfifo(m.path / "fifo"),
        lambda: os.mknod(m.path / "sock", stat.S_IFSOCK | 0o600),
        lambda: os.mknod(m.path / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3)),
    ):
        with pytest.raises(PermissionError) as e:
            make()
        assert e.value.errno == errno.EPERM
    assert sorted(os.listdir(m.path)) == ["plain"]


def _times(p: Path) -> tuple[int, int]:
    st = os.stat(p)
    return st.st_mtime_ns, st.st_ctime_ns


DIR_CHANGES: dict[str, Callable[[Path], None]] = {
    "create": lambda d: (d / "new").write_bytes(b"n"),
    "mkdir": lambda d: (d / "sub2").mkdir(),
    "unlink": lambda d: (d / "f").unlink(),
    "rmdir": lambda d: (d / "sub").rmdir(),
    "rename-within": lambda d: (d / "f").rename(d / "f2"),
    "rename-in": lambda d: (d.parent / "outside").rename(d / "inside"),
    "rename-out": lambda d: (d / "f").rename(d.parent / "moved"),
}


@pytest.mark.parametrize("change", list(DIR_CHANGES))
def test_folder_mtime_and_ctime_change(mount: Callable[..., Mounted], change: str) -> None:
    m = mount()
    d = m.path / "d"
    d.mkdir()
    (d / "sub").mkdir()
    (d / "f").write_bytes(b"f")
    (m.path / "outside").write_bytes(b"o")
    past = 1_000_000_000 * 10**9  # 2001: any change moves mtime forward from here
    os.utime(d, ns=(past, past))
    mtime0, ctime0 = _times(d)
    assert mtime0 == past
    DIR_CHANGES[change](d)
    mtime1, ctime1 = _times(d)
    assert mtime1 > mtime0, f"{change}: folder mtime unchanged"
    assert ctime1 > ctime0, f"{change}: folder ctime unchanged"


def test_ctime_changes_on_chmod_chown_truncate_and_never_goes_back(
    mount: Callable[..., Mounted],
) -> None:
    m = mount()
    f = m.path / "f"
    f.write_bytes(b"0123456789")
    seen = [os.stat(f).st_ctime_ns]
    for change in (
        lambda: os.chmod(f, 0o600),
        lambda: os.chown(f, 1234, 1234),
        lambda: os.truncate(f, 3),
        lambda: os.utime(f, ns=(10**9, 10**9)),  # times set into the past: ctime still now
    ):
        time.sleep(0.02)  # past the clock's granularity (timestamps may come from a 4 ms tick)
        change()
        seen.append(os.stat(f).st_ctime_ns)
        assert seen[-1] > seen[-2], f"ctime did not move forward: {seen}"


def test_folder_link_count_is_two_plus_subfolders(mount: Callable[..., Mounted]) -> None:
    m = mount()
    d = m.path / "d"
    d.mkdir()
    assert os.stat(d).st_nlink == 2
    (d / "a").mkdir()
    (d / "b").mkdir()
    (d / "file").write_bytes(b"x")
    assert os.stat(d).st_nlink == 4
    (d / "a").rmdir()
    assert os.stat(d).st_nlink == 3
    assert os.stat(m.path).st_nlink == 3  # root: itself, its parent entry, d


def test_unlinked_open_file_has_no_links(mount: Callable[..., Mounted]) -> None:
    m = mount()
    f = m.path / "f"
    f.write_bytes(b"still readable")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert os.fstat(fd).st_nlink == 1
        f.unlink()
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"still readable"
    finally:
        os.close(fd)


def _renameat2(a: Path, b: Path, flags: int) -> int:
    """0, or the errno of ``renameat2(AT_FDCWD, a, AT_FDCWD, b, flags)``."""
    fn = LIBC.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags)
    return 0 if rc == 0 else ctypes.get_errno()


def test_renameat2_flags_other_than_noreplace_are_einval(mount: Callable[..., Mounted]) -> None:
    if not hasattr(LIBC, "renameat2"):
        pytest.skip("libc has no renameat2")
    m = mount()
    a, b = m.path / "a", m.path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    assert _renameat2(a, b, RENAME_WHITEOUT) == errno.EINVAL
    assert _renameat2(a, b, RENAME_EXCHANGE) == errno.EINVAL
    assert _renameat2(a, b, RENAME_NOREPLACE) == errno.EEXIST
    assert (a.read_bytes(), b.read_bytes()) == (b"a", b"b")
    assert _renameat2(a, m.path / "c", RENAME_NOREPLACE) == 0
    assert sorted(os.listdir(m.path)) == ["b", "c"]


def _getdents(fd: int, bufsize: int) -> list[str]:
    """One ``getdents64`` call with a small buffer: the names it returned."""
    buf = ctypes.create_string_buffer(bufsize)
    n = LIBC.syscall(SYS_GETDENTS64, fd, buf, bufsize)
    if n < 0:
        raise OSError(ctypes.get_errno(), "getdents64")
    names, pos = [], 0
    while pos < n:
        _ino, _off, reclen, _type = struct.unpack_from("<QqHB", buf.raw, pos)
        name = buf.raw[pos + 19 : pos + reclen].split(b"\0", 1)[0]
        names.append(os.fsdecode(name))
        pos += reclen
    return names


@pytest.mark.parametrize("change", ["remove", "add"])
def test_readdir_offsets_stable_while_the_folder_changes(
    mount: Callable[..., Mounted], change: str
) -> None:
    """Entries present from the first to the last ``getdents64`` call come back exactly
    once, whatever is removed or created between calls, names sorting before the
    cursor included (offsets that are indices into the listing would skip or repeat)."""
    if SYS_GETDENTS64 is None:
        pytest.skip(f"no getdents64 number for {platform.machine()}")
    m = mount()
    d = m.path / "d"
    d.mkdir()
    kept = [f"m{i:03d}" for i in range(120)]
    removed = [f"a{i:03d}" for i in range(40)] if change == "remove" else []
    for name in kept + removed:
        (d / name).write_bytes(b"")
    seen: list[str] = []
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        step = 0
        while batch := _getdents(fd, 512):  # a handful of entries per call
            seen += batch
            if change == "remove":  # two that sort first (already returned) go
                for name in removed[2 * step : 2 * step + 2]:
                    (d / name).unlink()
            elif step < 8:  # two that sort first (before the cursor) appear; a new entry
                # may come back or not (POSIX), so additions stop for the reading to end
                for name in (f"0{step:03d}x", f"0{step:03d}y"):
                    (d / name).write_bytes(b"")
            step += 1
    finally:
        os.close(fd)
    names = [n for n in seen if n not in (".", "..")]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"returned twice: {dupes[:10]}"
    missing = sorted(set(kept) - set(names))
    assert not missing, f"never returned though present throughout: {missing[:10]}"
    assert step > 5  # the folder really was read in many calls
