"""The fstab line mounts through mount.fuse3 (``panfs SOURCE MOUNTPOINT -o OPTS``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import wait_for

pytestmark = pytest.mark.fuse


def test_fstab_line_mounts_with_mount_T(tmp_path: Path, drive: DriveServer) -> None:
    if os.geteuid() != 0:
        pytest.skip("mount -T needs root")
    mnt = tmp_path / "pan"
    mnt.mkdir()
    cfg = drive.write_client_config(tmp_path / "panfs.yaml", tmp_path / "cache")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{cfg} {mnt} fuse.panfs defaults,_netdev 0 0\n")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               XDG_STATE_HOME=str(tmp_path / "state"))  # fmt: skip
    # mount.fuse3 runs `panfs` with the system PATH: put ours there for the test, as a user
    # would install it (docs/systemd.md), and take it away again
    link = Path("/usr/local/bin/panfs")
    made = False
    if not link.exists():
        link.symlink_to(Path(sys.executable).parent / "panfs")
        made = True
    try:
        r = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True,
                           env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert os.path.ismount(mnt)
        (mnt / "via-fstab.txt").write_bytes(b"fstab works")
        r = subprocess.run([sys.executable, "-m", "panfs", "umount", "--wait", str(mnt)],
                           capture_output=True, text=True, env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        wait_for(lambda: not os.path.ismount(mnt), "unmount")
        assert DriveReader(drive).read("/via-fstab.txt") == b"fstab works"
    finally:
        if made:
            link.unlink()
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
        for rec in (tmp_path / "state" / "panfs" / "mounts").glob("*.json"):
            pid = json.loads(rec.read_text())["pid"]
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
