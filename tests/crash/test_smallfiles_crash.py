"""SIGKILL the daemon the moment `cp -r` of 500 small files (60 in CI) returned: after the
remount, every one of them reaches the drive whole (a closed file survives a killed daemon)."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from panfs import cache as cache_mod
from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader
from tests.support.procs import wait_for
from tests.support.scale import pick

pytestmark = [pytest.mark.fuse, pytest.mark.crash]


def _queued(m: Mounted) -> int:
    """Versions the journal still holds for the drive: pending or uploading, or closed and
    not yet queued (a copy faster than the queueing window leaves them all so)."""
    from panfs.journal import Journal
    from panfs.metadata import open_db
    from panfs.pending import OpenVersions

    db = open_db(m.cache_dir / "journal.db")
    try:
        return len(Journal(db).jobs(("pending", "uploading"))) + len(OpenVersions(db).all())
    finally:
        db.close()


def test_kill_right_after_cp_r_of_500_small_files(mounted: Mounted, tmp_path: Path) -> None:
    rng = random.Random(500)
    src = tmp_path / "tree"
    files: dict[str, bytes] = {}
    for i in range(pick(500, 60)):
        rel = f"d{i % 7}/f{i:03d}.txt"
        files[rel] = rng.randbytes(rng.randrange(1 << 10, 32 << 10))
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(files[rel])
    subprocess.run(["cp", "-r", str(src), str(mounted.path / "tree")], check=True)
    mounted.kill()  # at once: most files are still queued or uploading
    assert _queued(mounted) > 0  # else the kill interrupted nothing
    mounted.remount()
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    on_drive = {}  # the drive's SHA-1 of the bytes it stored, per file
    for d in range(7):
        for item in reader.list(f"/tree/d{d}"):
            on_drive[f"d{d}/{item['name']}"] = (item["size"], item["content_hash"].upper())
    assert on_drive == {
        rel: (len(data), hashlib.sha1(data).hexdigest().upper()) for rel, data in files.items()
    }
    for rel in rng.sample(sorted(files), 10):  # and some read back whole
        assert reader.read(f"/tree/{rel}") == files[rel], rel
    mounted.check_logs()


def test_spare_cache_files_outlive_a_kill_and_serve_after_it(mounted: Mounted) -> None:
    """The empty cache files made ahead for CREATEs survive a SIGKILL (nothing refers to
    them: the start-up takes them back as spares, it neither removes nor uploads them), and
    the next file created takes one of them; only the files written reach the drive."""
    wait_for(lambda: len(mounted.cache_files(0)) >= cache_mod.SPARES, "the spares to be made")
    (mounted.path / "a.txt").write_bytes(b"a" * 1000)
    mounted.kill()
    spares = mounted.cache_files(0)
    assert len(spares) >= cache_mod.SPARES - 1
    mounted.remount()
    (mounted.path / "b.txt").write_bytes(b"b" * 2000)
    by_bytes = mounted.cache_files(2000)
    assert by_bytes  # b.txt's cache file...
    assert by_bytes <= spares  # ...is one made before the kill
    mounted.wait_idle()
    reader = DriveReader(mounted.drive)
    assert sorted((i["name"], i["size"]) for i in reader.list("/")) == [
        ("a.txt", 1000),
        ("b.txt", 2000),
    ]
    assert reader.read("/b.txt") == b"b" * 2000
    assert "nothing referred to" not in (mounted.cache_dir / "panfs.log").read_text()
    mounted.check_logs()
