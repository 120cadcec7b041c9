"""The mount against ``panfs serve --profile strict`` at the official rate limits.

``rsync -a`` of a 3,000-file tree with nested folders, ``mv`` across folders and
renames, ``ls -lR``, and reads of a 200 MiB file that is only on the drive: every
command exits 0, the content is identical on the mount and, once every upload is done,
on the drive itself, the server answers no 429 at all (the client's pacer stays under
the limits) and no call fails with EIO. CI runs 150 files and a 12 MiB file in 1 MiB
parts (the profile's 5xx on every tenth part still comes).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import require_fuse
from tests.support.scale import pick
from tests.uploader.conftest import Uploads, make_file

pytestmark = pytest.mark.fuse

MiB = 1 << 20


def _tree(root: Path, files: int) -> None:
    """``files`` small files (0 B to ~3 KiB) in 3 levels of folders, 50 files a folder."""
    for i in range(files):
        d = root / f"a{i % 6}" / f"b{(i // 6) % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(os.urandom((i * 131) % 3000))


def _same_tree_on_drive(reader: DriveReader, src: Path) -> None:
    """Every folder of ``src`` is on the drive under /tree with the same names, each once,
    and every file with the same bytes (the SHA-1 the drive computed of what it stored)."""
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        remote = "/tree" if rel == Path(".") else f"/tree/{rel}"
        items = reader.list(remote)
        names = [i["name"] for i in items]
        assert sorted(names) == sorted(dirs + files), remote
        got = {i["name"]: (i["size"], i["content_hash"].upper()) for i in items
               if i["type"] == "file"}  # fmt: skip
        want = {}
        for f in files:
            body = (Path(folder) / f).read_bytes()
            want[f] = (len(body), hashlib.sha1(body).hexdigest().upper())
        assert got == want, remote


def _run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{cmd[0]} exited {r.returncode}: {r.stderr[-2000:]}"
    return r.stdout


def test_rsync_mv_ls_and_reads_under_strict_profile(tmp_path: Path) -> None:
    require_fuse()
    with DriveServer(tmp_path / "d", "--profile", "strict") as drive:
        # the big file is only on the drive: uploaded beforehand by `panfs upload`
        big = make_file(tmp_path / "big.bin", pick(200, 12) * MiB)
        (tmp_path / "up").mkdir()
        Uploads(tmp_path / "up", drive, part_size=pick(16, 1) * MiB).run(big, "/data")
        drive.reset_stats()
        src = tmp_path / "src"
        _tree(src, pick(3000, 150))
        m = Mounted(tmp_path / "m", drive)
        try:
            t0 = time.monotonic()
            _run("rsync", "-a", f"{src}/", f"{m.path}/tree/")
            print(f"rsync {time.monotonic() - t0:.1f}s", file=sys.stderr)
            # moves across folders and renames, mirrored on the local copy
            for a, b in [
                ("a0/b0/f0.txt", "a1/b1/moved0.txt"),
                ("a2/b2/f14.txt", "a2/b2/renamed14.txt"),
                ("a3/b4", "a4/b4-moved"),
                ("a5", "a5-renamed"),
            ]:
                os.rename(m.path / "tree" / a, m.path / "tree" / b)
                shutil.move(src / a, src / b)
            t0 = time.monotonic()
            listing = _run("ls", "-lR", str(m.path))
            print(f"ls -lR {time.monotonic() - t0:.1f}s", file=sys.stderr)
            assert "moved0.txt" in listing
            assert "b4-moved" in listing
            h = hashlib.sha1()
            with open(m.path / "data" / "big.bin", "rb") as f:
                while chunk := f.read(4 * MiB):
                    h.update(chunk)
            assert h.hexdigest() == hashlib.sha1(big.read_bytes()).hexdigest()
            _run("diff", "-r", str(src), str(m.path / "tree"))
            m.wait_idle()  # every upload done: the drive's answers to them count too
            _same_tree_on_drive(DriveReader(drive), src)
            stats = drive.stats()
            assert stats["too_many_requests"] == 0, stats.get("too_many_requests_by_op")
            # the uploads met the profile's part 5xx (every tenth part) and got past them
            assert sum(stats["errors"].get(c, 0) for c in ("InternalError", "ServiceUnavailable"))
        finally:
            m.close()
        # the profile answers a 5xx to every tenth part: each is retried, and said so once
        m.check_logs(allow=(r"WARNING panfs.daemon: upload of .*; retrying",))


def test_a_file_without_a_download_url_reads_as_eio(tmp_path: Path) -> None:
    """The strict drive gives no ``url`` for ``*.livp``: reading it is EIO, every time,
    with one log line naming the file; the mount goes on."""
    require_fuse()
    with DriveServer(tmp_path / "d", "--profile", "strict") as drive:
        live = make_file(tmp_path / "photo.livp", 300 * 1024)
        other = make_file(tmp_path / "photo.jpg", 300 * 1024)
        (tmp_path / "up").mkdir()
        Uploads(tmp_path / "up", drive).run(live, other, "/p")
        m = Mounted(tmp_path / "m", drive)
        try:
            for _ in range(3):
                with pytest.raises(OSError, match=r"Input/output error") as e:
                    (m.path / "p" / "photo.livp").read_bytes()
                assert e.value.errno == errno.EIO
            assert (m.path / "p" / "photo.jpg").read_bytes() == other.read_bytes()
        finally:
            m.close()
        lines = m.log.read_text().splitlines()
        if (m.cache_dir / "panfs.log").exists():
            lines += (m.cache_dir / "panfs.log").read_text().splitlines()
        warned = {line.split(" ", 3)[-1] for line in lines if " WARNING " in line}
        assert len(warned) == 1, warned
        assert "photo.livp" in warned.pop()


def test_a_mkdir_whose_answer_was_lost_is_there_at_once(mounted: Mounted) -> None:
    """The drive made the folder but its answer was lost: mkdir succeeds (the client finds
    its own folder), the folder is usable at once, and the drive holds one of it."""
    mounted.drive.set_faults([{"op": "create", "action": "drop_after_store", "times": 1}])
    os.mkdir(mounted.path / "new")
    (mounted.path / "new" / "f.txt").write_bytes(b"hello")
    assert os.listdir(mounted.path / "new") == ["f.txt"]
    assert os.listdir(mounted.path) == ["new"]
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert [f["name"] for f in reader.list("/")] == ["new"]
    assert reader.read("/new/f.txt") == b"hello"
    mounted.check_logs()
