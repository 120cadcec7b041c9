"""What the kernel says is mounted where: ``/proc/self/mountinfo``, and detaching dead mounts.

Owns: finding the mount at a path (its filesystem type and source) or of a device, telling a
panfs mount (``fuse.panfs``) from anything else, telling a mount whose daemon
died (``ENOTCONN``) from a live one, the lazy unmount that detaches it, and
resolving a mount point given through a symlink without hanging on a dead mount.
Must not: import the mount stack, or unmount anything that is not ``fuse.panfs``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from panfs.errors import LocalError, UsageError

FSTYPE = "fuse.panfs"
SOURCE_PREFIX = "panfs:"  # fsname=panfs:STATE_DIR: any user finds the daemon's state


def fsname(state_dir: Path) -> str:
    """``panfs:STATE_DIR`` (shown by mount and df; ``panfs status MOUNTPOINT`` reads it back
    as ``MountEntry.state_dir``), or plain ``panfs`` when the path would not survive the
    option string."""
    text = str(state_dir)
    if any(c in text for c in ",\\") or not text.isprintable():
        return "panfs"
    return SOURCE_PREFIX + text


@dataclass(frozen=True)
class MountEntry:
    mountpoint: str
    fstype: str
    source: str
    dev: str = ""  # "major:minor" of the file system (a file's ``st_dev``: ``device``)

    @property
    def is_panfs(self) -> bool:
        return self.fstype == FSTYPE

    @property
    def state_dir(self) -> Path | None:
        """The state dir the daemon recorded in its fsname, if it could."""
        if self.source.startswith(SOURCE_PREFIX) and len(self.source) > len(SOURCE_PREFIX):
            return Path(self.source[len(SOURCE_PREFIX) :])
        return None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def entries(mountinfo: str = "/proc/self/mountinfo") -> list[MountEntry]:
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        out.append(MountEntry(_unescape(fields[4]), tail[0], _unescape(tail[1]), fields[2]))
    return out


def device(st_dev: int) -> str:
    """A file's ``st_dev`` as mountinfo writes it (``MountEntry.dev``)."""
    return f"{os.major(st_dev)}:{os.minor(st_dev)}"


def fstypes(st_dev: int) -> set[str]:
    """The file system types mounted from that device (empty when none is found)."""
    dev = device(st_dev)
    return {e.fstype for e in entries() if e.dev == dev}


def find(path: Path) -> MountEntry | None:
    """The topmost mount whose mount point is exactly ``path`` (absolute, resolved)."""
    found = None
    for e in entries():
        if e.mountpoint == str(path):
            found = e  # later lines are mounted over earlier ones
    return found


def resolve(path: Path) -> Path:
    """An absolute mount point with symlinks resolved. A dead FUSE mount answers ENOTCONN
    to a stat, which ``realpath`` steps over; a live one answers."""
    return Path(os.path.realpath(path.expanduser()))


def is_dead(path: Path) -> bool:
    """A FUSE mount whose daemon is gone: every access fails with ENOTCONN."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def _fusermount() -> str | None:
    return shutil.which("fusermount3") or shutil.which("fusermount")


def unmount(path: Path, *, lazy: bool = False) -> None:
    """``fusermount3 -u`` (``-z`` for lazy), or ``umount`` (``-l``) when that is missing."""
    tool = _fusermount()
    if tool:
        cmd = [tool, "-u", *(["-z"] if lazy else []), str(path)]
    else:
        cmd = ["umount", *(["-l"] if lazy else []), str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise LocalError(f"cannot unmount {path}: {msg[-1] if msg else 'unknown error'}")


def panfs_mount(path: Path, command: str) -> MountEntry:
    """The panfs mount at ``path``; one line if nothing or something else is mounted there."""
    entry = find(path)
    if entry is None:
        raise UsageError(f"{path} is not mounted")
    if not entry.is_panfs:
        raise UsageError(
            f"{path} is a {entry.fstype} mount, not a panfs mount; panfs {command} leaves it alone"
        )
    return entry


def containing(path: Path) -> tuple[Path, str] | None:
    """The panfs mount holding ``path`` and the path relative to its root, if any. Only
    the parent folder is resolved (a file in a mount may be gone, or not yet on the drive)."""
    parent = Path(os.path.realpath(path.parent)) if path.name else Path(os.path.realpath(path))
    full = parent / path.name if path.name else parent
    best: MountEntry | None = None
    for e in entries():
        if not e.is_panfs:
            continue
        mp = e.mountpoint
        if (str(full) == mp or str(full).startswith(mp.rstrip("/") + "/")) and (
            best is None or len(mp) > len(best.mountpoint)
        ):
            best = e
    if best is None:
        return None
    return Path(best.mountpoint), os.path.relpath(full, best.mountpoint)
