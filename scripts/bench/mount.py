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
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def wait_mount(path: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if os.path.ismount(path):
            return
        if proc.poll() is not None:
            raise SystemExit(f"mount failed ({proc.returncode})")
        time.sleep(0.05)
    raise SystemExit("mount did not come up")


def cp(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    return time.perf_counter() - t0


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rclone_side_by_side(src: Path, tmp: Path) -> tuple[float, float, int] | None:
    """The same cp through `rclone mount --vfs-cache-mode writes` of `rclone serve webdav` on
    loopback: (cp seconds, seconds until uploaded, rclone mount peak RSS), or None."""
    rclone = shutil.which("rclone")
    if rclone is None:
        return None
    served, mnt, cache = tmp / "rc-remote", tmp / "rc-mnt", tmp / "rc-cache"
    for d in (served, mnt, cache):
        d.mkdir()
    port, rc_port = free_port(), free_port()
    env = dict(
        os.environ,
        RCLONE_CONFIG_BENCH_TYPE="webdav",
        RCLONE_CONFIG_BENCH_URL=f"http://127.0.0.1:{port}",
        RCLONE_CONFIG_BENCH_VENDOR="other",
    )
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen(
        [rclone, "serve", "webdav", str(served), "--addr", f"127.0.0.1:{port}"], **quiet
    )
    mount = None
    try:
        time.sleep(1.0)
        mount = subprocess.Popen(
            [rclone, "mount", "bench:", str(mnt), "--vfs-cache-mode", "writes",
             "--cache-dir", str(cache), "--rc", "--rc-addr", f"127.0.0.1:{rc_port}",
             "--rc-no-auth"],
            env=env, **quiet,
        )  # fmt: skip
        wait_mount(mnt, mount)
        t0 = time.perf_counter()
        took = cp(src, mnt / "f.bin")
        size = src.stat().st_size
        target = served / "f.bin"

        def uploading() -> bool:
            r = subprocess.run(
                [rclone, "rc", "vfs/stats", "--url", f"http://127.0.0.1:{rc_port}/"],
                capture_output=True, text=True,
            )  # fmt: skip
            try:
                disk = json.loads(r.stdout).get("diskCache", {})
            except ValueError:
                return True
            return bool(disk.get("uploadsInProgress") or disk.get("uploadsQueued"))

        while not (target.exists() and target.stat().st_size == size) or uploading():
            time.sleep(0.1)
        until = time.perf_counter() - t0
        return took, until, peak_rss(mount.pid)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        for proc in (mount, server):
            if proc is not None:
                proc.terminate()
                proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2GiB")
    size = parse_size(ap.parse_args().size)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "src.bin"
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for i in range(size >> 20):
                f.write(bytes([i & 0xFF]) + block[1:])
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
            subprocess.run(["fusermount3", "-u", "-z", str(pt_mnt)])
            pt.terminate()
            pt.wait(10)
        os.unlink(tmp / "pt.bin")
        # panfs
        drive = Drive(tmp / "drive")
        mnt = tmp / "mnt"
        mnt.mkdir()
        cfg = tmp / "c.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "remote": {
                        "endpoint": drive.url,
                        "client_id": drive.account["client_id"],
                        "client_secret": drive.account["client_secret"],
                        "refresh_token": drive.token(),
                    },
                    "cache": {"dir": str(tmp / "cache")},
                    "upload": {"rapid_upload": False},
                }
            )
        )
        env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"))
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "panfs",
                "mount",
                "--foreground",
                "--config",
                str(cfg),
                str(mnt),
            ],
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            wait_mount(mnt, p)
            t0 = time.perf_counter()
            ours = cp(src, mnt / "f.bin")
            while drive.stats()["requests"].get("complete", 0) < 1:
                time.sleep(0.05)
            on_drive = time.perf_counter() - t0
            rss = peak_rss(p.pid)
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
            p.terminate()
            p.wait(30)
            drive.close()
        rclone = rclone_side_by_side(src, tmp)
    mib = size / (1 << 20)
    print(f"{'what':<34}{'seconds':>9}{'MiB/s':>9}")
    for what, t in (
        ("cp to local disk", local),
        ("cp into pyfuse3 pass-through", ceiling),
        ("cp into panfs mount", ours),
        ("cp until on the drive", on_drive),
    ):
        print(f"{what:<34}{t:>9.2f}{mib / t:>9.0f}")
    print(f"ratio panfs/pass-through: {ceiling / ours:.2f} (target >= 0.9)")
    print(f"daemon peak RSS: {rss / (1 << 20):.0f} MiB (target <= 96)")
    if rclone is None:
        print("rclone: not installed (apt install rclone), not measured")
    else:
        rc_cp, rc_until, rc_rss = rclone
        print(f"{'rclone mount: cp':<34}{rc_cp:>9.2f}{mib / rc_cp:>9.0f}")
        print(f"{'rclone mount: cp until uploaded':<34}{rc_until:>9.2f}{mib / rc_until:>9.0f}")
        print(f"rclone mount peak RSS: {rc_rss / (1 << 20):.0f} MiB")
        print(f"panfs vs rclone: cp {rc_cp / ours:.2f}x, until uploaded {rc_until / on_drive:.2f}x")


if __name__ == "__main__":
    main()
