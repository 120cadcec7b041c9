#!/usr/bin/env python3
"""Small files through the mount, in one run: `cp -r` of N files of 1-32 KiB into the panfs
mount, the time until all are on the drive, `rsync -a` of the same tree into a new folder (and
until on the drive), a second `rsync -a` with nothing changed, and `find` after a remount;
against the same `cp -r` into a minimal pyfuse3 pass-through of a folder tree (the ceiling of a
Python FUSE file system: create/write/release of the same files) and to local disk; with
rclone installed, the same through `rclone mount --vfs-cache-mode writes` of `rclone serve
webdav` on loopback. Rounds alternate their order; medians are reported, with the daemon's
peak RSS. Targets: cp -r >= 2x faster than rclone and within 3x of the pass-through; peak RSS
<= 96 MiB. It measures panfs, not the rate limiter: the drive server runs with
`--no-rate-limits` and the client's config sets `remote.rate_limits` to 0 (no pacing) for list,
getDownloadUrl and *.
``--baseline-code DIR``: also run the panfs rounds with the daemon from another source tree
(e.g. `git archive` of an older commit), for before/after figures in the same run.
``--profile FILE``: record the daemon with py-spy during the first cp -r (collapsed stacks).
``--settle S`` (default 2): seconds every mount (panfs, pass-through, rclone alike) is left
alone between coming up and the copy, as a mount in use has been up a while (panfs makes its
spare cache files then; 0 measures a copy started the moment the mount is up).
``--no-rclone`` leaves rclone out; ``--cp-only`` measures `cp -r` (and until on the drive) alone,
for quick rounds while changing the write path.
Needs root and /dev/fuse.

    .venv/bin/python scripts/bench/smallfiles.py [--files 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    MiB,
    PanfsMount,
    RcloneMount,
    alternating,
    bench_tmp,
    run,
    stop,
    unmount,
    wait_mount,
    wait_until,
)
from _drive import Drive, pinned_drive

PASSTHROUGH_TREE = r"""
import errno, os, sys, pyfuse3, trio
ROOT = sys.argv[2]
class Ops(pyfuse3.Operations):
    enable_writeback_cache = True
    def __init__(self):
        super().__init__(); self.paths = {pyfuse3.ROOT_INODE: ROOT}; self.inos = {ROOT: 1}
    def _ino(self, path):
        ino = self.inos.get(path)
        if ino is None:
            ino = self.inos[path] = os.lstat(path).st_ino + 1
            self.paths[ino] = path
        return ino
    def _attr(self, path):
        st = os.lstat(path); a = pyfuse3.EntryAttributes()
        for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
                  "st_mtime_ns", "st_ctime_ns"):
            setattr(a, k, getattr(st, k))
        a.st_ino = self._ino(path); a.attr_timeout = a.entry_timeout = 1; return a
    def _child(self, parent, name): return os.path.join(self.paths[parent], os.fsdecode(name))
    async def getattr(self, ino, ctx=None): return self._attr(self.paths[ino])
    async def lookup(self, parent, name, ctx=None):
        p = self._child(parent, name)
        if not os.path.lexists(p): raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(p)
    async def setattr(self, ino, attr, fields, fh, ctx):
        p = self.paths[ino]
        if fields.update_size: os.truncate(p, attr.st_size)
        if fields.update_mode: os.chmod(p, attr.st_mode & 0o7777)
        if fields.update_mtime or fields.update_atime:
            st = os.lstat(p)
            os.utime(p, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                            attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns))
        return self._attr(p)
    async def mkdir(self, parent, name, mode, ctx):
        p = self._child(parent, name); os.mkdir(p, mode); return self._attr(p)
    async def create(self, parent, name, mode, flags, ctx):
        p = self._child(parent, name)
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
        return pyfuse3.FileInfo(fh=fd), self._attr(p)
    async def open(self, ino, flags, ctx):
        return pyfuse3.FileInfo(fh=os.open(self.paths[ino], os.O_RDWR))
    async def write(self, fh, off, buf): return os.pwrite(fh, buf, off)
    async def read(self, fh, off, size): return os.pread(fh, size, off)
    async def release(self, fh): os.close(fh)
    async def flush(self, fh): pass
    async def fsync(self, fh, datasync): os.fsync(fh)
    async def opendir(self, ino, ctx): return ino
    async def readdir(self, ino, start, token):
        names = sorted(os.listdir(self.paths[ino]))
        for i, n in enumerate(names[start:], start + 1):
            p = os.path.join(self.paths[ino], n)
            if not pyfuse3.readdir_reply(token, os.fsencode(n), self._attr(p), i): return
    async def rename(self, p_old, n_old, p_new, n_new, flags, ctx):
        a, b = self._child(p_old, n_old), self._child(p_new, n_new)
        os.rename(a, b); ino = self.inos.pop(a, None)
        if ino is not None: self.inos[b] = ino; self.paths[ino] = b
    async def unlink(self, parent, name, ctx): os.unlink(self._child(parent, name))
    async def rmdir(self, parent, name, ctx): os.rmdir(self._child(parent, name))
    async def forget(self, inode_list): pass
    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData(); st = os.statvfs(ROOT)
        for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail", "f_namemax"):
            setattr(s, k, getattr(st, k))
        return s
async def main():
    await pyfuse3.main()
pyfuse3.init(Ops(), sys.argv[1], {"fsname=passthrough"})
try: trio.run(main)
finally: pyfuse3.close(unmount=True)
"""


def make_tree(root: Path, n: int) -> int:
    rng = random.Random(2000)
    total = 0
    for i in range(n):
        p = root / f"d{i % 10}" / f"s{i // 10 % 10}" / f"f{i:05d}.dat"  # 20 files a folder
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randrange(1 << 10, (32 << 10) + 1))
        p.write_bytes(data)
        total += len(data)
    return total


def settle_disk() -> None:
    """The last run's writes must not still be going to disk in this one."""
    os.sync()


def completes(drive: Drive) -> int:
    return int(drive.stats()["requests"].get("complete", 0))


def panfs_round(
    drive: Drive,
    tmp: Path,
    src: Path,
    n: int,
    code: str | None,
    profile: str | None,
    cp_only: bool = False,
    settle: float = 0.0,
) -> dict[str, float]:
    out: dict[str, float] = {}
    with PanfsMount(drive, tmp, upload={"rapid_upload": False}, code=code) as m:
        time.sleep(settle)
        before = completes(drive)
        spy = None
        if profile:
            spy = subprocess.Popen(
                [shutil.which("py-spy") or "py-spy", "record", "-r", "250", "-f", "raw",
                 "-o", profile, "-p", str(m.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
        t0 = time.perf_counter()
        try:
            out["cp -r"] = run("cp", "-r", str(src), str(m.mnt / "cp"))
        finally:
            stop(spy, wait=60, sig=signal.SIGINT)  # py-spy writes its profile and exits
        wait_until(lambda: completes(drive) - before >= n)
        out["cp -r: until all on the drive"] = time.perf_counter() - t0
        if cp_only:
            out["peak RSS MiB"] = m.rss() / MiB
            return out
        before = completes(drive)
        t0 = time.perf_counter()
        out["rsync -a"] = run("rsync", "-a", str(src) + "/", str(m.mnt / "rs"))
        wait_until(lambda: completes(drive) - before >= n)
        out["rsync -a: until all on the drive"] = time.perf_counter() - t0
        out["rsync -a again, nothing changed"] = run(
            "rsync", "-a", str(src) + "/", str(m.mnt / "rs")
        )
        m.stop()
        m.start()
        out["find after a remount"] = run("find", str(m.mnt), "-type", "f", "-printf", "")
        m.stop()
        out["peak RSS MiB"] = m.rss() / MiB
    return out


def passthrough_round(tmp: Path, src: Path, settle: float = 0.0) -> float:
    back, mnt = tmp / "pt-back", tmp / "pt-mnt"
    for d in (back, mnt):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-c", PASSTHROUGH_TREE, str(mnt), str(back)], stdout=subprocess.DEVNULL
    )
    try:
        wait_mount(mnt, p)
        time.sleep(settle)
        return run("cp", "-r", str(src), str(mnt / "cp"))
    finally:
        unmount(mnt, p, wait=10)
        shutil.rmtree(back, ignore_errors=True)


def rclone_round(
    rclone: str, tmp: Path, src: Path, n: int, cp_only: bool = False, settle: float = 0.0
) -> dict[str, float]:
    served = tmp / "rc-remote"
    shutil.rmtree(served, ignore_errors=True)
    served.mkdir()
    out: dict[str, float] = {}
    try:
        with RcloneMount(rclone, served, tmp) as rc:
            time.sleep(settle)

            def uploaded(sub: str) -> bool:
                files = sum(1 for p in (served / sub).rglob("*") if p.is_file())
                return not rc.busy() and files >= n

            t0 = time.perf_counter()
            out["cp -r"] = run("cp", "-r", str(src), str(rc.mnt / "cp"))
            wait_until(lambda: uploaded("cp"))
            out["cp -r: until all on the drive"] = time.perf_counter() - t0
            if cp_only:
                out["peak RSS MiB"] = rc.rss() / MiB
                return out
            t0 = time.perf_counter()
            out["rsync -a"] = run("rsync", "-a", str(src) + "/", str(rc.mnt / "rs"))
            wait_until(lambda: uploaded("rs"))
            out["rsync -a: until all on the drive"] = time.perf_counter() - t0
            out["rsync -a again, nothing changed"] = run(
                "rsync", "-a", str(src) + "/", str(rc.mnt / "rs")
            )
            out["peak RSS MiB"] = rc.rss() / MiB
    finally:
        shutil.rmtree(served, ignore_errors=True)
    return out


IDLE = ("_thread_cache.py:211)", "_io_epoll.py:243)")


def summarize_profile(path: str, top: int = 20) -> None:
    """Where the daemon's busy samples were during cp -r: per FUSE operation and uploader
    (inclusive), and the lines with the most own time (a panfs line that runs SQL or a
    syscall owns the time spent in it: py-spy sees no C frames)."""
    own: Counter[str] = Counter()
    area: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or stack.endswith(IDLE):
            continue  # a worker thread waiting for work, or trio waiting for events
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        tops = [f.split(" ")[0] for f in frames if "panfs/fs.py" in f or "uploader.py" in f]
        key = tops[0] if tops else ("other, trio thread" if "unrolled_run" in stack else "other")
        if "to_thread" in stack or "_thread_cache" in stack:
            key = "worker threads (fsync, cache writes)"
        area[key] += n
    print(f"profile of the daemon during cp -r: {total} busy samples")
    for name, n in area.most_common(12):
        print(f"  {n / total:6.1%} in {name}")
    for f, n in own.most_common(top):
        print(f"  {n / total:6.1%} own  {f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-code", default=None)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--no-rclone", action="store_true")
    ap.add_argument("--cp-only", action="store_true")
    ap.add_argument("--settle", type=float, default=2.0)
    a = ap.parse_args()
    rclone = None if a.no_rclone else shutil.which("rclone")
    results: dict[str, dict[str, list[float]]] = {}

    def note(who: str, figures: dict[str, float]) -> None:
        for k, v in figures.items():
            results.setdefault(who, {}).setdefault(k, []).append(v)

    with bench_tmp() as tmp:
        src = tmp / "src"
        total = make_tree(src, a.files)
        print(f"{a.files} files, {total / MiB:.1f} MiB")
        drive = pinned_drive(tmp / "drive")
        try:
            runs = ["local", "passthrough", "panfs"]
            runs += ["before"] if a.baseline_code else []
            runs += ["rclone"] if rclone else []
            for r, which in alternating(runs, a.rounds):
                settle_disk()
                if which == "local":
                    dst = tmp / "local"
                    note("local disk", {"cp -r": run("cp", "-r", str(src), str(dst))})
                    shutil.rmtree(dst)
                elif which == "passthrough":
                    note("pass-through", {"cp -r": passthrough_round(tmp, src, a.settle)})
                elif which == "panfs":
                    prof = a.profile if r == 0 else None
                    note("panfs", panfs_round(drive, tmp, src, a.files, None, prof, a.cp_only,
                                              a.settle))  # fmt: skip
                elif which == "before":
                    note("panfs before", panfs_round(drive, tmp, src, a.files,
                                                     a.baseline_code, None, a.cp_only,
                                                     a.settle))  # fmt: skip
                else:
                    assert rclone is not None
                    note("rclone", rclone_round(rclone, tmp, src, a.files, a.cp_only, a.settle))
        finally:
            drive.close()
    print(f"machine load at the end: {os.getloadavg()[0]:.2f} (1 min average, 2 cores shared)")
    print(f"medians of {a.rounds} rounds, seconds (all runs in brackets)")
    for who, figures in results.items():
        for what, vs in figures.items():
            print(f"  {who:<14}{what:<36}{statistics.median(vs):>9.2f}   "
                  f"{[round(v, 2) for v in vs]}")  # fmt: skip
    med = {w: {k: statistics.median(v) for k, v in f.items()} for w, f in results.items()}
    ours = med["panfs"]["cp -r"]
    print(f"cp -r: panfs is {ours / med['pass-through']['cp -r']:.2f}x the pass-through time "
          "(target <= 3)")  # fmt: skip
    if "rclone" in med:
        for k in ("cp -r", "cp -r: until all on the drive", "rsync -a",
                  "rsync -a again, nothing changed"):  # fmt: skip
            if k not in med["rclone"]:
                continue
            print(f"panfs vs rclone, {k}: {med['rclone'][k] / med['panfs'][k]:.2f}x faster"
                  + (" (target >= 2)" if k == "cp -r" else ""))  # fmt: skip
    else:
        print("rclone: not measured (--no-rclone, or not installed: apt install rclone)")
    if "panfs before" in med:
        for k, v in med["panfs"].items():
            print(f"before/after, {k}: {med['panfs before'][k]:.2f} -> {v:.2f}")
    print(f"daemon peak RSS: {max(results['panfs']['peak RSS MiB']):.0f} MiB (target <= 96)")
    if a.profile:
        summarize_profile(a.profile)


if __name__ == "__main__":
    main()
