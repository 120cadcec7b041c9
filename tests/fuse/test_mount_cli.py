"""``panfs mount`` as a user runs it: it returns once the mount is live and the daemon goes on
in the background; a second mount of the same mount point or cache dir is refused in one line;
``panfs umount`` ends it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import require_fuse, run_panfs, wait_for

pytestmark = pytest.mark.fuse


def _daemon_pid(cache_dir: Path) -> int:
    return int(json.loads((cache_dir / "daemon.lock").read_text())["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_daemon_mode_second_mounts_and_umount(tmp_path: Path, drive: DriveServer) -> None:
    require_fuse()
    cache = tmp_path / "cache"
    cfg = drive.write_client_config(tmp_path / "c.yaml", cache)
    mp, other = tmp_path / "mp", tmp_path / "other"
    mp.mkdir()
    other.mkdir()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    pid = 0
    try:
        r = run_panfs(["mount", "--config", str(cfg), str(mp)], env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"panfs mount: {mp} is mounted; log: {cache / 'panfs.log'}\n"
        assert os.path.ismount(mp)  # live when the parent returned
        pid = _daemon_pid(cache)
        assert _alive(pid)
        assert (cache / "panfs.log").exists()
        (mp / "f.txt").write_bytes(b"daemon")
        # the same mount point again, and the same cache dir elsewhere: one line each
        again = run_panfs(["mount", "--config", str(cfg), str(mp)], env=env, timeout=60)
        assert again.returncode == 2
        assert again.stderr.strip().splitlines() == [
            f"panfs mount: error: {mp} is already mounted; unmount it first (panfs umount {mp})"
        ]
        locked = run_panfs(["mount", "--config", str(cfg), str(other)], env=env, timeout=60)
        assert locked.returncode != 0
        assert len(locked.stderr.strip().splitlines()) == 1
        assert f"is in use by panfs (pid {pid}" in locked.stderr
        assert not os.path.ismount(other)
        r = run_panfs(["umount", "--wait", str(mp)], env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert not os.path.ismount(mp)
        wait_for(lambda: not _alive(pid), "the daemon to exit")
        assert DriveReader(drive).read("/f.txt") == b"daemon"
    finally:
        for path in (mp, other):
            subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
