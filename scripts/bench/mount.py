#!/usr/bin/env python3
"""cp of SIZE into the panfs mount vs into a minimal pyfuse3 pass-through (the ceiling of our
stack) vs to local disk, in one run; then the time until the file is on the drive and the
daemon's peak RSS. With rclone installed, the same cp through `rclone mount --vfs-cache-mode
writes` of `rclone serve webdav` on loopback, side by side. Targets: cp into the mount ≥ 0.9×
the pass-through; peak RSS ≤ 96 MiB.
Needs root and /dev/fuse.

    .venv/bin/python scripts/bench/mount.py [--size 2GiB]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    MiB,
    PanfsMount,
    RcloneMount,
    bench_tmp,
    make_file,
    run,
    unmount,
    wait_mount,
    wait_until,
)
from _drive import Drive

from panfs.config import parse_size

PASSTHROUGH = r"""
import errno, os, sys, stat, pyfuse3, trio
TARGET = sys.argv[2]
class Ops(pyfuse3.Operations):
    enable_writeback_cache = True
    def __init__(self):
        super().__init__(); self.fds = {}; self.size = 0; self.exists = False
    def _attr(self, ino):
        a = pyfuse3.EntryAttributes(); a.st_ino = ino
        a.st_mode = (stat.S_IFDIR | 0o755) if ino == 1 else (stat.S_IFREG | 0o644)
        a.st_size = 0 if ino == 1 else os.path.getsize(TARGET); a.st_nlink = 1
        a.attr_timeout = a.entry_timeout = 1; return a
    async def getattr(self, ino, ctx=None): return self._attr(ino)
    async def lookup(self, parent, name, ctx=None):
        if name == b"f" and os.path.exists(TARGET): return self._attr(2)
        raise pyfuse3.FUSEError(errno.ENOENT)
    async def create(self, parent, name, mode, flags, ctx):
        fd = os.open(TARGET, os.O_RDWR | os.O_CREAT | os.O_TRUNC); self.fds[fd] = fd
        return pyfuse3.FileInfo(fh=fd), self._attr(2)
    async def open(self, ino, flags, ctx):
        fd = os.open(TARGET, os.O_RDWR); return pyfuse3.FileInfo(fh=fd)
    async def setattr(self, ino, attr, fields, fh, ctx):
        if fields.update_size: os.truncate(TARGET, attr.st_size)
        return self._attr(ino)
    async def write(self, fh, off, buf): return os.pwrite(fh, buf, off)
    async def read(self, fh, off, size): return os.pread(fh, size, off)
    async def release(self, fh): os.close(fh)
    async def flush(self, fh): pass
async def main():
    await pyfuse3.main()
pyfuse3.init(Ops(), sys.argv[1], {"fsname=passthrough"})
print("ready", flush=True)
try: trio.run(main)
finally: pyfuse3.close(unmount=True)
"""


def cp(src: Path, dst: Path) -> float:
    return run("cp", str(src), str(dst))


def rclone_side_by_side(src: Path, tmp: Path) -> tuple[float, float, int] | None:
    """The same cp through `rclone mount --vfs-cache-mode writes` of `rclone serve webdav` on
    loopback: (cp seconds, seconds until uploaded, rclone mount peak RSS), or None."""
    rclone = shutil.which("rclone")
    if rclone is None:
        return None
    served = tmp / "rc-remote"
    served.mkdir()
    with RcloneMount(rclone, served, tmp) as rc:
        t0 = time.perf_counter()
        took = cp(src, rc.mnt / "f.bin")
        size = src.stat().st_size
        target = served / "f.bin"
        wait_until(
            lambda: target.exists() and target.stat().st_size == size and not rc.busy(),
            limit=3600,
            every=0.1,
        )
        until = time.perf_counter() - t0
        return took, until, rc.rss()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2GiB")
    size = parse_size(ap.parse_args().size)
    with bench_tmp() as tmp:
        src = tmp / "src.bin"
        make_file(src, size)
        local = cp(src, tmp / "local.bin")
        os.unlink(tmp / "local.bin")
        # pass-through ceiling
        pt_mnt = tmp / "pt"
        pt_mnt.mkdir()
        pt = subprocess.Popen(
            [sys.executable, "-c", PASSTHROUGH, str(pt_mnt), str(tmp / "pt.bin")],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_mount(pt_mnt, pt)
            ceiling = cp(src, pt_mnt / "f")
        finally:
            unmount(pt_mnt, pt, wait=10)
        os.unlink(tmp / "pt.bin")
        # panfs
        drive = Drive(tmp / "drive")
        try:
            with PanfsMount(drive, tmp, upload={"rapid_upload": False}) as m:
                t0 = time.perf_counter()
                ours = cp(src, m.mnt / "f.bin")
                wait_until(lambda: drive.stats()["requests"].get("complete", 0) >= 1, 3600, 0.05)
                on_drive = time.perf_counter() - t0
                rss = m.rss()
        finally:
            drive.close()
        rclone = rclone_side_by_side(src, tmp)
    mib = size / MiB
    print(f"{'what':<34}{'seconds':>9}{'MiB/s':>9}")
    for what, t in (
        ("cp to local disk", local),
        ("cp into pyfuse3 pass-through", ceiling),
        ("cp into panfs mount", ours),
        ("cp until on the drive", on_drive),
    ):
        print(f"{what:<34}{t:>9.2f}{mib / t:>9.0f}")
    print(f"ratio panfs/pass-through: {ceiling / ours:.2f} (target >= 0.9)")
    print(f"daemon peak RSS: {rss / MiB:.0f} MiB (target <= 96)")
    if rclone is None:
        print("rclone: not installed (apt install rclone), not measured")
    else:
        rc_cp, rc_until, rc_rss = rclone
        print(f"{'rclone mount: cp':<34}{rc_cp:>9.2f}{mib / rc_cp:>9.0f}")
        print(f"{'rclone mount: cp until uploaded':<34}{rc_until:>9.2f}{mib / rc_until:>9.0f}")
        print(f"rclone mount peak RSS: {rc_rss / MiB:.0f} MiB")
        print(f"panfs vs rclone: cp {rc_cp / ours:.2f}x, until uploaded {rc_until / on_drive:.2f}x")


if __name__ == "__main__":
    main()
