"""Real mounts, out of process: ``python -m panfs mount --foreground`` against a drive server.

``Mounted`` API: ``path`` (the mount point), ``proc`` (the daemon), ``config`` (its
config file), ``cache_dir``, ``drive`` (the ``DriveServer``), ``wait_idle()`` (poll the
journal until nothing is pending or uploading), ``kill()`` (SIGKILL the daemon and
clear the dead mount), ``remount()`` (start again on the same cache dir),
``umount_wait()`` (``panfs umount --wait``), ``close()``.
Every mount is torn down in ``finally``: lazy unmount, then terminate, then kill.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.drive import DriveServer
from tests.support.procs import PANFS, check_logs, kill9, stop, wait_for

pytestmark = pytest.mark.fuse


def _lazy_umount(path: Path) -> None:
    subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


class Mounted:
    def __init__(
        self,
        base: Path,
        drive: DriveServer,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        **sections: dict[str, Any],
    ) -> None:
        self.env = env or {}  # extra environment for the daemon (crash points)
        self.args = args  # extra arguments for `panfs mount` (-o ...)
        self.base = base
        self.drive = drive
        self.path = base / "mnt"
        self.path.mkdir(parents=True, exist_ok=True)
        self.cache_dir = base / "cache"
        self.config = drive.write_client_config(base / "config.yaml", self.cache_dir, **sections)
        self.log = base / "mount.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        env = dict(os.environ, XDG_STATE_HOME=str(self.base / "state"), **self.env)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [*PANFS, "mount", "--foreground", "--config", str(self.config), *self.args,
                 str(self.path)],
                stdout=err, stderr=err, env=env,
            )  # fmt: skip
        proc = self.proc
        wait_for(lambda: os.path.ismount(self.path), "the mount", proc)  # type: ignore[arg-type]

    def wait_idle(self) -> None:
        from panfs.journal import Journal
        from panfs.metadata import open_db
        from panfs.pending import OpenVersions

        def idle() -> bool:
            # the kernel sends RELEASE after close() returned: a version still open counts too
            db = open_db(self.cache_dir / "journal.db")
            try:
                return not Journal(db).jobs(("pending", "uploading")) and not OpenVersions(db).all()
            finally:
                db.close()

        wait_for(idle, "uploads to finish", self.proc, limit=600)  # type: ignore[arg-type]

    def kill(self) -> None:
        assert self.proc is not None
        kill9(self.proc)
        _lazy_umount(self.path)

    def remount(self) -> None:
        self.start()

    def umount_wait(self, expect: int = 0) -> None:
        """``panfs umount --wait`` (every upload done, then unmount), then the daemon's exit.
        The daemon is our child: it is reaped while ``umount`` runs, or ``umount`` would
        see a zombie and wait out its whole grace period for the pid to go."""
        env = dict(os.environ, XDG_STATE_HOME=str(self.base / "state"))
        proc = self.proc
        assert proc is not None
        with subprocess.Popen(
            [*PANFS, "umount", "--wait", str(self.path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as umount:  # fmt: skip
            while umount.poll() is None:
                proc.poll()
                time.sleep(0.02)
            out, err = umount.communicate()
        assert umount.returncode == expect, err or out  # 3: unmounted, a file needs attention
        wait_for(lambda: proc.poll() is not None, "the daemon to exit", limit=60)

    def close(self) -> None:
        _lazy_umount(self.path)
        if self.proc is not None:
            stop(self.proc)

    def check_logs(self, allow: tuple[str, ...] = ()) -> None:
        check_logs(self.log, allow)
        check_logs(self.cache_dir / "panfs.log", allow)


@pytest.fixture
def mounted(tmp_path: Path, drive: DriveServer) -> Iterator[Mounted]:
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        pytest.skip("needs root and /dev/fuse")
    m = Mounted(tmp_path / "m", drive)
    try:
        yield m
    finally:
        m.close()
