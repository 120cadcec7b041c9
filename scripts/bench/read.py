#!/usr/bin/env python3
"""Reading a file only the drive has, through the mount, against what the wire allows, in one
run: a cold sequential read (`cat > /dev/null`) of SIZE, the same read again (warm), and 200
random 64 KiB reads (a fresh mount each cold run), against `curl` of the whole file and a raw
httpx loop of 8 MiB ranged GETs (and of the same 200 ranged 64 KiB GETs) from the same server;
with rclone installed, `rclone mount --vfs-cache-mode writes` of `rclone serve webdav` side by
side. Rounds alternate their order; medians are reported. Every panfs run reports the daemon's
peak RSS and how many getDownloadUrl calls the server counted for each file read. Targets: cold
read >= 0.5x curl and faster than rclone; peak RSS <= 96 MiB.
It measures panfs, not the rate limiter: the drive server runs with `--no-rate-limits` and the
client's config sets `remote.rate_limits` to 0 (no pacing) for list, getDownloadUrl and *.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MiB, PanfsMount, RcloneMount, alternating, bench_tmp, timed
from _drive import Drive, pinned_drive

from panfs.config import parse_size

PART = 64 * MiB
RANDOM_READS = 200
RANDOM_SIZE = 64 << 10


def block(i: int) -> bytes:
    """MiB number ``i`` of the test file (random-looking, different per MiB)."""
    return random.Random(i).randbytes(MiB)


def upload(drive: Drive, name: str, size: int, src: Path | None) -> dict[str, Any]:
    """Put a SIZE file straight onto the drive (parts PUT raw); also write it to ``src``."""
    with open(src or os.devnull, "wb") as out:

        def body(n: int) -> Iterator[bytes]:
            for i in range(n * (PART // MiB), min(size, (n + 1) * PART) // MiB):
                b = block(i)
                if src is not None:
                    out.write(b)
                yield b

        return drive.put_file(name, size, PART, body)


def download_url(drive: Drive, c: dict[str, Any]) -> str:
    r = httpx.post(
        f"{drive.url}/adrive/v1.0/openFile/getDownloadUrl",
        headers=c["headers"],
        json={"drive_id": c["drive_id"], "file_id": c["file_id"]},
    )
    return str(r.json()["url"])


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


def drop_caches() -> None:
    """The kernel's page cache of earlier runs must not serve a cold read."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


Results = dict[str, list[float]]
URL_CALLS = "getDownloadUrl calls"


def url_calls(drive: Drive) -> int:
    """getDownloadUrl requests the server has counted so far."""
    return int(drive.stats()["requests"].get("getDownloadUrl", 0))


def panfs_read(drive: Drive, out: Results, what: str, key: str, read: Callable[[], object]) -> None:
    """Time ``read()`` as ``panfs: what``, and count its getDownloadUrl calls as ``key``."""
    before = url_calls(drive)
    out.setdefault(f"panfs: {what}", []).append(timed(read))
    out.setdefault(f"{key}: {URL_CALLS}", []).append(url_calls(drive) - before)


def panfs_round(drive: Drive, tmp: Path, size: int, out: Results, rss: dict[str, int]) -> None:
    with PanfsMount(drive, tmp) as m:
        f = m.mnt / "f.bin"
        panfs_read(drive, out, "cold cat", "panfs cold cat", lambda: cat(f))
        panfs_read(drive, out, "warm cat again", "panfs warm cat", lambda: cat(f))
        rss["panfs: sequential"] = max(rss.get("panfs: sequential", 0), m.rss())
    with PanfsMount(drive, tmp) as m:
        f = m.mnt / "f.bin"
        before = drive.stats()["download_bytes_sent"]
        panfs_read(
            drive, out, "200 random 64 KiB reads", "panfs random", lambda: random_reads(f, size)
        )
        got = drive.stats()["download_bytes_sent"] - before
        out.setdefault("panfs random: MiB fetched", []).append(got / MiB)
        rss["panfs: random"] = max(rss.get("panfs: random", 0), m.rss())


def rclone_round(
    rclone: str, served: Path, tmp: Path, size: int, out: Results, rss: dict[str, int]
) -> None:
    with RcloneMount(rclone, served, tmp) as rc:
        f = rc.mnt / "f.bin"
        out.setdefault("rclone: cold cat", []).append(timed(lambda: cat(f)))
        out.setdefault("rclone: warm cat again", []).append(timed(lambda: cat(f)))
        drop_caches()
        t = timed(lambda: random_reads(f, size))
        out.setdefault("rclone: 200 random 64 KiB reads", []).append(t)
        rss["rclone"] = max(rss.get("rclone", 0), rc.rss())


def report(a: argparse.Namespace, size: int, results: Results, rss: dict[str, int]) -> None:
    mib = size / MiB
    print(f"machine load at the end: {os.getloadavg()[0]:.2f} (1 min average, 2 cores shared)")
    head = f"what ({a.size}, median of {a.rounds})"
    print(f"{head:<44}{'seconds':>9}{'MiB/s':>9}   all runs")
    for what, ts in results.items():
        mid = statistics.median(ts)
        if "fetched" in what or URL_CALLS in what:
            print(f"{what:<44}{mid:>9.1f}{'':>9}   {[round(t, 1) for t in ts]}")
            continue
        whole = ("cat" in what and "cat of" not in what) or "curl" in what or "8 MiB" in what
        rate = f"{mib / mid:>9.0f}" if whole else ""
        print(f"{what:<44}{mid:>9.2f}{rate:>9}   {[round(t, 2) for t in ts]}")
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
    with bench_tmp() as tmp:
        drive = pinned_drive(tmp / "drive")
        served = tmp / "served"
        served.mkdir()
        try:
            c = upload(drive, "f.bin", size, served / "f.bin" if rclone else None)
            url = download_url(drive, c)
            runs = ["panfs", "curl", "httpx"] + (["rclone"] if rclone else [])
            for _, which in alternating(runs, a.rounds):
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
                drop_caches()  # its upload's writeback must not run under the read
                with PanfsMount(drive, tmp, cache={"max_size": "512MiB"}) as m:
                    what = f"cold cat of {a.rss_size}"
                    f = m.mnt / "big.bin"
                    panfs_read(drive, results, what, f"panfs cat of {a.rss_size}", lambda: cat(f))
                    rss[f"panfs: {a.rss_size} sequential"] = m.rss()
        finally:
            drive.close()
    report(a, size, results, rss)


if __name__ == "__main__":
    main()
