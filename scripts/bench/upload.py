#!/usr/bin/env python3
"""`panfs upload` vs a bare httpx PUT loop of the same parts, to the same server, in one run;
then the peak RSS of `panfs upload` at two sizes (target: ratio ≥ 0.9, RSS ≤ 128 MiB and flat).
The server gets half the CPUs and the clients the other half, as if it were the remote service
it stands in for (`_drive.split_cpus`).

    .venv/bin/python scripts/bench/upload.py [--size 2GiB] [--rss-sizes 1GiB,8GiB]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _drive import Drive, split_cpus

from panfs.config import parse_size

PART = 16 << 20


def make(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(bytes([i & 0xFF]) + block[1:])


def panfs_upload(drive: Drive, tmp: Path, src: Path, name: str) -> tuple[float, int]:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "remote": {
                    "endpoint": drive.url,
                    "client_id": drive.account["client_id"],
                    "client_secret": drive.account["client_secret"],
                    "refresh_token": drive.token(),
                },
                "cache": {"dir": str(tmp / f"cache-{name}")},
                "upload": {"part_size": "16MiB", "rapid_upload": False},
            }
        )
    )
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "panfs",
            "upload",
            "--json",
            "--config",
            str(cfg),
            str(src),
            f"/{name}",
        ],
        stdout=subprocess.DEVNULL,
    )
    peak = 0
    while p.poll() is None:
        # VmHWM: this process image's peak RSS (ru_maxrss would include the pre-exec fork)
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.05)
    assert p.returncode == 0, f"panfs upload failed: {p.returncode}"
    return time.perf_counter() - t0, peak


def bare_loop(drive: Drive, src: Path, size: int, name: str) -> float:
    t0 = time.perf_counter()
    with httpx.Client(timeout=300) as http, open(src, "rb") as f:
        h, c = drive.create_file(http, name, size, (size + PART - 1) // PART)
        for info in c["part_info_list"]:
            r = http.put(info["upload_url"], content=f.read(PART))
            assert r.status_code == 200, r.text
        drive.complete(http, h, c)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--rss-sizes", default="1GiB,8GiB")
    ap.add_argument("--rounds", type=int, default=3, help="bare/panfs pairs, order alternating")
    a = ap.parse_args()
    size = parse_size(a.size)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "src.bin"
        make(src, size)
        split = split_cpus()
        drive = Drive(tmp / "drive", split[0] if split else None)
        if split:  # the bare loop runs here; panfs upload inherits this
            os.sched_setaffinity(0, split[1])
            print(f"server on CPUs {sorted(split[0])}, clients on CPUs {sorted(split[1])}")
        try:
            bares, ourses = [], []
            for r in range(a.rounds):  # bare, panfs, panfs, bare, ...: neither always goes first
                order = ("bare", "ours") if r % 2 == 0 else ("ours", "bare")
                for which in order:
                    os.sync()  # the last run's 2 GiB must not still be writing back in this one
                    if which == "bare":
                        bares.append(bare_loop(drive, src, size, f"bare{r}.bin"))
                    else:
                        ourses.append(panfs_upload(drive, tmp, src, f"ours{r}")[0])
            mib = size / (1 << 20)
            print(f"{'what':<26}{'seconds':>9}{'MiB/s':>9}   (best of {a.rounds}; all runs, s)")
            bare, ours = min(bares), min(ourses)
            print(f"{'bare httpx PUT loop':<26}{bare:>9.2f}{mib / bare:>9.0f}   {bares}")
            print(f"{'panfs upload':<26}{ours:>9.2f}{mib / ours:>9.0f}   {ourses}")
            median = statistics.median(bares) / statistics.median(ourses)
            # the median: a shared disk makes single runs swing by a third either way
            print(f"ratio panfs/bare: {median:.2f} median to median (target >= 0.9)")
            print(f"ratio panfs/bare: {bare / ours:.2f} best to best")
            os.unlink(src)
            for s in a.rss_sizes.split(","):
                n = parse_size(s)
                f = tmp / f"rss-{n}.bin"
                make(f, n)
                _, rss = panfs_upload(drive, tmp, f, f"rss{n}")
                os.unlink(f)
                print(f"peak RSS of panfs upload, {s}: {rss / (1 << 20):.0f} MiB (target <= 128)")
        finally:
            drive.close()


if __name__ == "__main__":
    main()
