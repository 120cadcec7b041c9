#!/usr/bin/env python3
"""Reading a file only the drive has, through the mount, against what the wire allows, in one
run: a cold sequential read (`cat > /dev/null`) of SIZE, the same read again (warm), and 200
random 64 KiB reads (a fresh mount each cold run), against `curl` of the whole file and a raw
httpx loop of 8 MiB ranged GETs (and of the same 200 ranged 64 KiB GETs) from the same server;
with rclone installed, `rclone mount --vfs-cache-mode writes` of `rclone serve webdav` side by
side. Rounds alternate their order; medians are reported. Every panfs run reports the daemon's
peak RSS. Targets: cold read >= 0.5x curl and faster than rclone; peak RSS <= 96 MiB.
The drive server runs as `panfs serve` with its defaults (were per-user rate limits on by
default, this bench would turn them off: it measures panfs, not the limiter).
Needs root and /dev/fuse.

    .venv/bin/python scripts/bench/read.py [--size 1GiB] [--rounds 3] [--rss-size 8GiB]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _drive import Drive, split_cpus
from mount import free_port, peak_rss, wait_mount

from panfs.config import parse_size

MiB = 1 << 20
PART = 64 * MiB
RANDOM_READS = 200
RANDOM_SIZE = 64 << 10


def block(i: int) -> bytes:
    """MiB number ``i`` of the test file (random-looking, different per MiB)."""
    return random.Random(i).randbytes(MiB)


def upload(drive: Drive, name: str, size: int, src: Path | None) -> dict[str, Any]:
    """Put a SIZE file straight onto the drive (parts PUT raw); also write it to ``src``."""
    out = open(src, "wb") if src is not None else None  # noqa: SIM115 (closed below)
    try:
        with httpx.Client(timeout=600) as http:
            h, c = drive.create_file(http, name, size, (size + PART - 1) // PART)

            def body(n: int) -> Iterator[bytes]:
                for i in range(n * (PART // MiB), min(size, (n + 1) * PART) // MiB):
                    b = block(i)
                    if out is not None:
                        out.write(b)
                    yield b

            for n, info in enumerate(c["part_info_list"]):
                r = http.put(info["upload_url"], content=body(n))
                assert r.status_code == 200, r.text
            drive.complete(http, h, c)
            c["headers"] = h
            return c
    finally:
        if out is not None:
            out.close()


def download_url(drive: Drive, c: dict[str, Any]) -> str:
    r = httpx.post(
        f"{drive.url}/adrive/v1.0/openFile/getDownloadUrl",
        headers=c["headers"],
        json={"drive_id": c["drive_id"], "file_id": c["file_id"]},
    )
    return str(r.json()["url"])


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cat(path: Path) -> None:
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)


def offsets(size: int) -> list[int]:
    rng = random.Random(10)
    return [rng.randrange(0, size - RANDOM_SIZE) & ~4095 for _ in range(RANDOM_READS)]


def random_reads(path: Path, size: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in offsets(size):
            assert len(os.pread(fd, RANDOM_SIZE, off)) == RANDOM_SIZE
    finally:
        os.close(fd)


def httpx_loop(url: str, size: int) -> None:
    with httpx.Client(timeout=600) as http:
        for off in range(0, size, 8 * MiB):
            end = min(size, off + 8 * MiB) - 1
            r = http.get(url, headers={"Range": f"bytes={off}-{end}"})
            assert r.status_code == 206
            assert len(r.content) == end + 1 - off


def httpx_random(url: str, size: int) -> None:
    with httpx.Client(timeout=600) as http:
        for off in offsets(size):
            r = http.get(url, headers={"Range": f"bytes={off}-{off + RANDOM_SIZE - 1}"})
            assert r.status_code == 206
            assert len(r.content) == RANDOM_SIZE


def curl(url: str) -> None:
    subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)


class Panfs:
    """One fresh mount (its own empty cache dir) of the drive."""

    n = 0

    def __init__(self, drive: Drive, tmp: Path, extra: dict[str, Any] | None = None) -> None:
        Panfs.n += 1
        base = tmp / f"panfs{Panfs.n}"
        self.mnt = base / "mnt"
        self.mnt.mkdir(parents=True)
        cfg = base / "c.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "remote": {
                        "endpoint": drive.url,
                        "client_id": drive.account["client_id"],
                        "client_secret": drive.account["client_secret"],
                        "refresh_token": drive.token(),
                    },
                    "cache": {"dir": str(base / "cache"), **(extra or {})},
                }
            )
        )
        env = dict(os.environ, XDG_STATE_HOME=str(base / "state"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "panfs", "mount", "--foreground", "--config", str(cfg),
             str(self.mnt)],
            stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        wait_mount(self.mnt, self.proc)
        self.base = base

    def rss(self) -> int:
        return peak_rss(self.proc.pid)

    def close(self, keep: bool = False) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)])
        self.proc.terminate()
        self.proc.wait(30)
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)


class Rclone:
    """`rclone mount --vfs-cache-mode writes` of `rclone serve webdav` serving ``served``."""

    def __init__(self, rclone: str, served: Path, tmp: Path) -> None:
        self.mnt, self.cache = tmp / "rc-mnt", tmp / "rc-cache"
        for d in (self.mnt, self.cache):
            d.mkdir(exist_ok=True)
        port = free_port()
        env = dict(
            os.environ,
            RCLONE_CONFIG_BENCH_TYPE="webdav",
            RCLONE_CONFIG_BENCH_URL=f"http://127.0.0.1:{port}",
            RCLONE_CONFIG_BENCH_VENDOR="other",
        )
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.server = subprocess.Popen(
            [rclone, "serve", "webdav", str(served), "--addr", f"127.0.0.1:{port}"], **quiet
        )
        time.sleep(1.0)
        self.proc = subprocess.Popen(
            [rclone, "mount", "bench:", str(self.mnt), "--vfs-cache-mode", "writes",
             "--cache-dir", str(self.cache)],
            env=env, **quiet,
        )  # fmt: skip
        wait_mount(self.mnt, self.proc)

    def rss(self) -> int:
        return peak_rss(self.proc.pid)

    def close(self) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)])
        for p in (self.proc, self.server):
            p.terminate()
            p.wait(30)


def drop_caches() -> None:
    """The kernel's page cache of earlier runs must not serve a cold read."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


Results = dict[str, list[float]]


def panfs_round(drive: Drive, tmp: Path, size: int, out: Results, rss: dict[str, int]) -> None:
    m = Panfs(drive, tmp)
    f = m.mnt / "f.bin"
    try:
        out.setdefault("panfs: cold cat", []).append(timed(lambda: cat(f)))
        out.setdefault("panfs: warm cat again", []).append(timed(lambda: cat(f)))
        rss["panfs: sequential"] = max(rss.get("panfs: sequential", 0), m.rss())
    finally:
        m.close()
    m = Panfs(drive, tmp)
    f = m.mnt / "f.bin"
    try:
        before = drive.stats()["download_bytes_sent"]
        t = timed(lambda: random_reads(f, size))
        out.setdefault("panfs: 200 random 64 KiB reads", []).append(t)
        got = drive.stats()["download_bytes_sent"] - before
        out.setdefault("panfs random: MiB fetched", []).append(got / MiB)
        rss["panfs: random"] = max(rss.get("panfs: random", 0), m.rss())
    finally:
        m.close()


def rclone_round(
    rclone: str, served: Path, tmp: Path, size: int, out: Results, rss: dict[str, int]
) -> None:
    rc = Rclone(rclone, served, tmp)
    f = rc.mnt / "f.bin"
    try:
        out.setdefault("rclone: cold cat", []).append(timed(lambda: cat(f)))
        out.setdefault("rclone: warm cat again", []).append(timed(lambda: cat(f)))
        drop_caches()
        t = timed(lambda: random_reads(f, size))
        out.setdefault("rclone: 200 random 64 KiB reads", []).append(t)
        rss["rclone"] = max(rss.get("rclone", 0), rc.rss())
    finally:
        rc.close()


def report(a: argparse.Namespace, size: int, results: Results, rss: dict[str, int]) -> None:
    mib = size / MiB
    print(f"machine load at the end: {os.getloadavg()[0]:.2f} (1 min average, 2 cores shared)")
    head = f"what ({a.size}, median of {a.rounds})"
    print(f"{head:<44}{'seconds':>9}{'MiB/s':>9}   all runs")
    for what, ts in results.items():
        med = statistics.median(ts)
        if "fetched" in what:
            print(f"{what:<44}{med:>9.1f}{'':>9}   {[round(t, 1) for t in ts]}")
            continue
        whole = ("cat" in what and "cat of" not in what) or "curl" in what or "8 MiB" in what
        rate = f"{mib / med:>9.0f}" if whole else ""
        print(f"{what:<44}{med:>9.2f}{rate:>9}   {[round(t, 2) for t in ts]}")
    med = {k: statistics.median(v) for k, v in results.items()}
    cold = med["panfs: cold cat"]
    print(
        f"cold read panfs vs curl: {med['curl GET of the whole file'] / cold:.2f}x (target >= 0.5)"
    )
    print(
        f"cold read panfs vs httpx 8 MiB loop: {med['httpx loop of 8 MiB ranged GETs'] / cold:.2f}x"
    )
    rnd = med["httpx: 200 ranged 64 KiB GETs"] / med["panfs: 200 random 64 KiB reads"]
    print(f"random reads panfs vs httpx 64 KiB GETs: {rnd:.2f}x")
    if "rclone: cold cat" in med:
        for k in ("cold cat", "warm cat again", "200 random 64 KiB reads"):
            print(f"panfs vs rclone, {k}: {med['rclone: ' + k] / med['panfs: ' + k]:.2f}x faster")
    else:
        print("rclone: not installed (apt install rclone), not measured")
    for k, v in rss.items():
        print(f"peak RSS, {k}: {v / MiB:.0f} MiB" + ("" if k == "rclone" else " (target <= 96)"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rss-size", default="8GiB", help="a cold read of this size for RSS only")
    a = ap.parse_args()
    size = parse_size(a.size)
    rclone = shutil.which("rclone")
    results: Results = {}
    rss: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp_s:
        tmp = Path(tmp_s)
        split = split_cpus()
        drive = Drive(tmp / "drive", split[0] if split else None)
        if split:
            os.sched_setaffinity(0, split[1])
            print(f"server on CPUs {sorted(split[0])}, clients on CPUs {sorted(split[1])}")
        served = tmp / "served"
        served.mkdir()
        try:
            c = upload(drive, "f.bin", size, served / "f.bin" if rclone else None)
            url = download_url(drive, c)
            for r in range(a.rounds):
                runs = ["panfs", "curl", "httpx"] + (["rclone"] if rclone else [])
                for which in runs if r % 2 == 0 else runs[::-1]:
                    drop_caches()
                    if which == "curl":
                        t = timed(lambda: curl(url))
                        results.setdefault("curl GET of the whole file", []).append(t)
                    elif which == "httpx":
                        t = timed(lambda: httpx_loop(url, size))
                        results.setdefault("httpx loop of 8 MiB ranged GETs", []).append(t)
                        t = timed(lambda: httpx_random(url, size))
                        results.setdefault("httpx: 200 ranged 64 KiB GETs", []).append(t)
                    elif which == "panfs":
                        panfs_round(drive, tmp, size, results, rss)
                    else:
                        assert rclone is not None
                        rclone_round(rclone, served, tmp, size, results, rss)
            if a.rss_size and parse_size(a.rss_size) != size:
                big = parse_size(a.rss_size)
                upload(drive, "big.bin", big, None)
                m = Panfs(drive, tmp, {"max_size": "512MiB"})
                try:
                    t = timed(lambda: cat(m.mnt / "big.bin"))
                    results.setdefault(f"panfs: cold cat of {a.rss_size}", []).append(t)
                    rss[f"panfs: {a.rss_size} sequential"] = m.rss()
                finally:
                    m.close()
        finally:
            drive.close()
    report(a, size, results, rss)


if __name__ == "__main__":
    main()
