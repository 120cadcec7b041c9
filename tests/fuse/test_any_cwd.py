"""``panfs mount`` on the embedded drive works from any current directory: a folder named
``panfs`` there (a checkout, a user's own folder) must not shadow the package in any child
process panfs starts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import require_fuse, wait_for

pytestmark = pytest.mark.fuse


def test_mount_from_a_directory_holding_a_panfs_folder(tmp_path: Path) -> None:
    require_fuse()
    cwd = tmp_path / "work"
    (cwd / "panfs").mkdir(parents=True)
    (cwd / "panfs" / "__init__.py").write_text("raise SystemExit('the wrong panfs')\n")
    (cwd / "panfs" / "__main__.py").write_text("raise SystemExit('the wrong panfs')\n")
    home = tmp_path / "home"
    home.mkdir()
    mp = tmp_path / "mp"
    mp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    panfs = [str(Path(sys.executable).parent / "panfs")]
    pid = 0
    try:
        r = subprocess.run(
            [*panfs, "mount", str(mp)], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        lock = next(home.rglob("daemon.lock"))
        pid = int(json.loads(lock.read_text())["pid"])
        (mp / "f.txt").write_bytes(b"from anywhere")
        assert (mp / "f.txt").read_bytes() == b"from anywhere"
        r = subprocess.run(
            [*panfs, "umount", "--wait", str(mp)], cwd=cwd, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert not os.path.ismount(mp)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mp)], capture_output=True)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not _alive(pid), "the daemon to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
