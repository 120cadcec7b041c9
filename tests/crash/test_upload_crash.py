"""``panfs upload`` of a 1 GiB file, SIGKILLed at five random points in a row and restarted."""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, kill9
from tests.uploader.conftest import MiB, Uploads, make_file

pytestmark = [pytest.mark.crash, pytest.mark.slow]


def test_upload_killed_five_times_converges(drive: DriveServer, tmp_path: Path) -> None:
    size, part = 1 << 30, 16 * MiB
    u = Uploads(tmp_path, drive, part_size="16MiB")
    src = make_file(tmp_path / "g.bin", size)
    sha1 = hashlib.sha1(src.read_bytes()).hexdigest().upper()
    drive.set_faults([{"op": "put_part", "action": "delay", "ms": 60}])
    rng = random.Random(7)
    for _ in range(5):
        with open(u.log, "a") as err:
            p = subprocess.Popen(
                [*PANFS, "upload", "--json", "--config", str(u.config), str(src), "/c"],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            time.sleep(rng.uniform(0.5, 2.5))
        finally:
            kill9(p)
    drive.set_faults([])
    u.run(src, "/c")
    meta = DriveReader(drive).get("/c/g.bin")
    assert meta is not None
    assert meta["content_hash"] == sha1
    received = drive.stats()["part_bytes_received"]
    assert received <= size + 5 * part, f"re-sent {received - size} bytes"
