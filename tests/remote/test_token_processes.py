"""One token chain, many processes: a mount and twenty ``panfs upload`` runs of one config.

Refresh tokens are single use: whoever refreshes holds the token file's lock, re-reads
it and refreshes only if its token is still the current one, so no process ever sends
a refresh token another one already spent. A process killed with a refresh in flight
is reported by the next start as exactly that.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fuse.conftest import Mounted
from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, check_logs, require_fuse, stop
from tests.uploader.conftest import Uploads, make_file

KiB = 1 << 10


@pytest.mark.fuse
def test_twenty_uploads_and_a_mount_share_one_token_chain(tmp_path: Path) -> None:
    require_fuse()
    # access tokens live 3 s: every process refreshes several times while the others do
    with DriveServer(tmp_path / "d", "--access-token-lifetime", "3", "--no-rate-limits") as drive:
        drive.set_faults([{"op": "put_part", "action": "delay", "ms": 150}])
        m = Mounted(tmp_path / "m", drive, upload={"part_size": "100KiB"})
        procs: list[subprocess.Popen[bytes]] = []
        log = tmp_path / "uploads.log"
        try:
            srcs = [make_file(tmp_path / f"f{i}.bin", 40 * 100 * KiB + i) for i in range(20)]
            with open(log, "ab") as err:
                for i, src in enumerate(srcs):
                    procs.append(
                        subprocess.Popen(
                            [*PANFS, "upload", "--config", str(m.config), str(src), f"/u{i}"],
                            stdout=subprocess.DEVNULL,
                            stderr=err,
                        )
                    )
            # the mount works on beside them, through the same token chain
            (m.path / "beside.bin").write_bytes(os.urandom(300 * KiB))
            for p in procs:
                assert p.wait(300) == 0, log.read_text()[-3000:]
            m.wait_idle()
        finally:
            for p in procs:
                stop(p)
            m.close()
        stats = drive.stats()
        assert not stats["errors"].get("RefreshTokenInvalid"), stats["errors"]
        assert stats["requests"]["access_token"] >= 3  # the chain did rotate under load
        reader = DriveReader(drive)
        assert (reader.get("/beside.bin") or {}).get("size") == 300 * KiB
        for i, src in enumerate(srcs):
            meta = reader.get(f"/u{i}/{src.name}")
            assert meta is not None
            assert meta["size"] == src.stat().st_size
        check_logs(log)
        m.check_logs()


def test_killed_with_a_refresh_in_flight_is_reported_as_that(
    drive: DriveServer, tmp_path: Path
) -> None:
    """Killed after the drive answered a refresh but before the answer was saved: the
    refresh token is spent. The next run says exactly that, with the fix."""
    u = Uploads(tmp_path, drive)
    src = make_file(tmp_path / "f.bin", 200 * KiB)
    r = u.run(src, "/up", check=False, env={"PANFS_CRASH_AT": "after_token_answer"})
    assert r.returncode == -signal.SIGKILL
    r = u.run(src, "/up", check=False)
    assert r.returncode != 0
    err = u.log.read_text()
    assert "was killed" in err
    assert "while refreshing the access token" in err
    assert "panfs login" in err
    assert "remote.refresh_token" in err
    assert "Traceback" not in err


def test_killed_before_the_refresh_went_out_recovers(drive: DriveServer, tmp_path: Path) -> None:
    """Killed after marking a refresh in flight but before sending it: the token is not
    spent; the next run says what happened and goes on."""
    u = Uploads(tmp_path, drive)
    src = make_file(tmp_path / "f.bin", 200 * KiB)
    r = u.run(src, "/up", check=False, env={"PANFS_CRASH_AT": "refresh_in_flight"})
    assert r.returncode == -signal.SIGKILL
    u.run(src, "/up")
    assert DriveReader(drive).read("/up/f.bin") == src.read_bytes()
    assert "killed while refreshing the access token" in u.log.read_text()
