"""``panfs upload`` of a 1 GiB file, SIGKILLed at five random points in a row and restarted;
an upload moved and renamed on the way, killed between the move and the rename."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.core import client_settings
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, kill9
from tests.uploader.conftest import MiB, Uploads, make_file

pytestmark = pytest.mark.crash


@pytest.mark.slow
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


# An upload renamed and moved while it was on the way (what the mount does for `mv`): after
# complete it is moved, then renamed, two calls; killed between them, the next run finishes.
_RETARGET = """
import json, sys, trio
from pathlib import Path
from panfs.journal import Journal
from panfs.metadata import open_db
from panfs.remote.client import open_client
from panfs.remote.settings import RemoteSettings
from panfs.upload_session import SessionSettings, UploadSession

settings_file, state, src, a, b = sys.argv[1:]

async def main() -> None:
    settings = RemoteSettings(**json.loads(Path(settings_file).read_text()))
    async with open_client(settings, Path(state)) as client:
        journal = Journal(open_db(Path(state) / "journal.db"))
        job = journal.by_source(src) or journal.add(
            source=src, parent_file_id=a, name="tmp.bin", remote_path="/a/tmp.bin")[0]

        def progress(job_id: int, sent: int) -> None:
            if sent:  # renamed and moved once its first part is on the drive
                journal.retarget(job_id, parent_file_id=b, name="final.bin",
                                 remote_path="/b/final.bin")

        settings_ = SessionSettings(part_size=100 * 1024, rapid_upload=False)
        await UploadSession(client, journal, job.id, settings_, progress).run()
        assert journal.get(job.id).state == "done"

trio.run(main)
"""


@pytest.mark.parametrize("reading", ["rename", "on-conflict"])
def test_killed_between_move_and_rename_lands_under_the_final_name(
    reading: str, tmp_path: Path
) -> None:
    with DriveServer(tmp_path / "d", "--move-new-name", reading) as drive:
        reader = DriveReader(drive)
        ids = {}
        for name in ("a", "b"):
            ids[name] = reader._api(
                "openFile/create",
                {"drive_id": reader.drive_id, "parent_file_id": "root", "name": name,
                 "type": "folder", "check_name_mode": "refuse"},
            )["file_id"]  # fmt: skip
        src = make_file(tmp_path / "f.bin", 3 * 100 * 1024 + 5)
        mine = tmp_path / "settings.json"
        mine.write_text(json.dumps(dataclasses.asdict(client_settings(drive, tmp_path / "c"))))
        args = [sys.executable, "-c", _RETARGET, str(mine), str(tmp_path / "state"), str(src),
                ids["a"], ids["b"]]  # fmt: skip
        env = dict(os.environ, PANFS_CRASH_AT="between_move_and_rename")
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == -9, r.stderr[-2000:]
        assert [f["name"] for f in reader.list("/b")] == ["tmp.bin"]  # moved, not renamed
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert [f["name"] for f in reader.list("/b")] == ["final.bin"]
        assert reader.list("/a") == []
        assert reader.read("/b/final.bin") == src.read_bytes()
