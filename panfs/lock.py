"""One daemon per state dir: an advisory ``flock`` on ``STATE_DIR/daemon.lock``.

Owns: taking and releasing that lock and recording who holds it (PID and mount
point) so a second daemon can name the holder. Must not: touch anything else in
the cache dir. The kernel drops the lock when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from panfs.errors import LockedError


@dataclass
class Lock:
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(cache_dir: Path) -> dict[str, object] | None:
    """Who wrote the lock file last (may be stale when nobody holds the lock)."""
    try:
        data = json.loads((cache_dir / "daemon.lock").read_text() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_held(state_dir: Path) -> bool:
    """Does a daemon hold the lock now? Read-only: never writes the lock file."""
    path = state_dir / "daemon.lock"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        pid = (holder(state_dir) or {}).get("pid")
        return isinstance(pid, int) and _pid_alive(pid)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(cache_dir: Path, mountpoint: str = "") -> Lock:
    path = cache_dir / "daemon.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError:
        raise LockedError(
            f"{cache_dir} belongs to another user; run panfs as that user, or set state.dir",
            err=13,
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = holder(cache_dir) or {}
        raise LockedError(
            f"state dir {cache_dir} is in use by panfs (pid {who.get('pid', '?')}, "
            f"mounted on {who.get('mountpoint', '?')}); unmount it or use another state.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "mountpoint": mountpoint}).encode(), 0)
    return Lock(path, fd)
