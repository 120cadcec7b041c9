"""Real mounts, out of process: ``python -m panfs mount --foreground`` against a drive server.

``Mounted`` API: ``path`` (the mount point), ``proc`` (the daemon), ``config`` (its
config file), ``cache_dir``, ``drive`` (the ``DriveServer``), ``wait_idle()`` (poll the
journal until nothing is pending or uploading), ``kill()`` (SIGKILL the daemon and
clear the dead mount), ``remount()`` (start again on the same cache dir),
``umount_wait()`` (``panfs umount --wait``), ``panfs(*args)`` (a panfs command with the
mount's environment, the daemon reaped meanwhile), ``close()``.
Every mount is torn down in ``finally``: lazy unmount, then terminate, then kill.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.core import test_sections
from tests.support.drive import DriveServer
from tests.support.procs import (
    PANFS,
    check_logs,
    kill9,
    require_fuse,
    run_panfs_reaping,
    stop,
    wait_for,
)

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
                journal = Journal(db)
                journal.clear_delays()  # as ``umount --wait`` does: no write-back delay to sit out
                return not journal.jobs(("pending", "uploading")) and not OpenVersions(db).all()
            finally:
                db.close()

        wait_for(idle, "uploads to finish", self.proc, limit=600)  # type: ignore[arg-type]

    def kill(self) -> None:
        assert self.proc is not None
        kill9(self.proc)
        _lazy_umount(self.path)

    def remount(self) -> None:
        self.start()

    def panfs(
        self, *args: str, expect: int | None = 0, limit: float = 600, **popen: Any
    ) -> subprocess.CompletedProcess[str]:
        """``panfs ARGS`` with this mount's environment, the daemon reaped as soon as it
        exits (``run_panfs_reaping``); asserts the exit code ``expect`` (None: any)."""
        env = dict(os.environ, XDG_STATE_HOME=str(self.base / "state"))
        r = run_panfs_reaping(args, self.proc, limit=limit, env=env, **popen)
        if expect is not None:
            assert r.returncode == expect, f"panfs {' '.join(args)}: {r.stderr or r.stdout}"
        return r

    def umount_wait(self, expect: int = 0) -> None:
        """``panfs umount --wait`` (every upload done, then unmount), then the daemon's exit.
        ``expect`` 3: unmounted, a file needs attention."""
        self.panfs("umount", "--wait", str(self.path), expect=expect)
        proc = self.proc
        assert proc is not None
        wait_for(lambda: proc.poll() is not None, "the daemon to exit", limit=60)

    def close(self) -> None:
        _lazy_umount(self.path)
        if self.proc is not None:
            stop(self.proc)
        if os.path.ismount(self.path):  # the daemon's own unmount raced ours: never leave it
            _lazy_umount(self.path)

    def check_logs(self, allow: tuple[str, ...] = ()) -> None:
        check_logs(self.log, allow)
        check_logs(self.cache_dir / "panfs.log", allow)

    def cache_files(self, size: int) -> set[str]:
        """Paths of the cache files of ``size`` bytes now (a file the daemon removes
        between the listing and its stat is not one of them)."""
        found = set()
        for e in os.scandir(self.cache_dir / "data"):
            with contextlib.suppress(FileNotFoundError):
                if e.is_file() and e.stat().st_size == size:
                    found.add(e.path)
        return found


@pytest.fixture
def mounted(tmp_path: Path, drive: DriveServer) -> Iterator[Mounted]:
    require_fuse()
    m = Mounted(tmp_path / "m", drive)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def mount(tmp_path: Path, drive: DriveServer) -> Iterator[Callable[..., Mounted]]:
    """``mount(name="m", **sections)``: a real mount on its own cache dir with the test
    settings (``test_sections``: short write-back delay and backoff), closed at the end."""
    require_fuse()
    made: list[Mounted] = []

    def make(name: str = "m", **sections: dict[str, Any]) -> Mounted:
        m = Mounted(tmp_path / name, drive, **test_sections(**sections))
        made.append(m)
        return m

    try:
        yield make
    finally:
        for m in made:
            m.close()
