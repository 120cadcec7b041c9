"""Which daemon (PID, state dir) serves which mount point, and finding it again.

Owns: one small JSON file per mount point under the XDG state dir, written whole
(``atomic.write_atomic``), removed on a clean unmount (a SIGKILL leaves it; readers check the
PID); and ``state_dir_of``, which finds a mount's state dir whatever config it was
started with: first from the mount's fsname (``panfs:STATE_DIR`` in
/proc/self/mountinfo, readable by every user), then from this file. Must not:
import the mount stack (``panfs status`` and ``umount`` read it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from panfs.atomic import write_atomic
from panfs.config import xdg_dir


def _registry(mountpoint: Path) -> Path:
    # never resolve(): stat-ing a mount point whose daemon is not serving yet would hang
    key = hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return xdg_dir("state") / "mounts" / f"{key}.json"


def record_mount(mountpoint: Path, state_dir: Path) -> Path:
    path = _registry(mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "mountpoint": str(mountpoint),
        "state_dir": str(state_dir),
        "cache_dir": str(state_dir),  # the name earlier versions read
        "pid": os.getpid(),
    }
    write_atomic(path, json.dumps(record))
    return path


def find_mount(mountpoint: Path) -> dict[str, str] | None:
    """The state dir (and PID) of the daemon that last mounted ``mountpoint``."""
    try:
        data = json.loads(_registry(mountpoint).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def state_dir_of(mountpoint: Path) -> Path | None:
    """The state dir serving ``mountpoint`` (resolved), or None if nothing says."""
    from panfs import mounts

    entry = mounts.find(mountpoint)
    if entry is not None and entry.is_panfs and entry.state_dir is not None:
        return entry.state_dir
    info = find_mount(mountpoint)
    if info is not None:
        d = info.get("state_dir") or info.get("cache_dir")
        if d:
            return Path(d)
    return None
