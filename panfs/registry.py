"""Which daemon (PID, cache dir) serves which mount point.

Owns: one small JSON file per mount point under the XDG state dir, written
temp + rename, removed on a clean unmount (a SIGKILL leaves it; readers check the
PID). Must not: import the mount stack (``panfs status`` and ``umount`` read it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from panfs.config import xdg_dir


def _registry(mountpoint: Path) -> Path:
    # never resolve(): stat-ing a mount point whose daemon is not serving yet would hang
    key = hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return xdg_dir("state") / "mounts" / f"{key}.json"


def record_mount(mountpoint: Path, cache_dir: Path) -> Path:
    path = _registry(mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"mountpoint": str(mountpoint), "cache_dir": str(cache_dir), "pid": os.getpid()})
    )
    os.replace(tmp, path)
    return path


def find_mount(mountpoint: Path) -> dict[str, str] | None:
    """The cache dir (and PID) of the daemon that last mounted ``mountpoint``."""
    try:
        data = json.loads(_registry(mountpoint).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
