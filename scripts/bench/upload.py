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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MiB, alternating, bench_tmp, make_file, panfs_config, poll_peak_rss, stop, timed
from _drive import Drive, pinned_drive

from panfs.config import parse_size

PART = 16 << 20


def panfs_upload(drive: Drive, tmp: Path, src: Path, name: str) -> tuple[float, int]:
    cfg = panfs_config(
        tmp / f"{name}.yaml",
        drive,
        tmp / f"cache-{name}",
        upload={"part_size": "16MiB", "rapid_upload": False},
    )
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "panfs", "upload", "--json", "--config", str(cfg), str(src),
         f"/{name}"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        peak = poll_peak_rss(p)
    finally:
        stop(p)
    assert p.returncode == 0, f"panfs upload failed: {p.returncode}"
    return time.perf_counter() - t0, peak


def bare_loop(drive: Drive, src: Path, size: int, name: str) -> float:
    with open(src, "rb") as f:
        return timed(lambda: drive.put_file(name, size, PART, lambda _: f.read(PART)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--rss-sizes", default="1GiB,8GiB")
    ap.add_argument("--rounds", type=int, default=3, help="bare/panfs pairs, order alternating")
    a = ap.parse_args()
    size = parse_size(a.size)
    with bench_tmp() as tmp:
        src = tmp / "src.bin"
        make_file(src, size)
        # the bare loop runs in this process; panfs upload inherits its CPUs
        drive = pinned_drive(tmp / "drive")
        try:
            bares, ourses = [], []
            for r, which in alternating(("bare", "ours"), a.rounds):
                os.sync()  # the last run's 2 GiB must not still be writing back in this one
                if which == "bare":
                    bares.append(bare_loop(drive, src, size, f"bare{r}.bin"))
                else:
                    ourses.append(panfs_upload(drive, tmp, src, f"ours{r}")[0])
            mib = size / MiB
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
                make_file(f, n)
                _, rss = panfs_upload(drive, tmp, f, f"rss{n}")
                os.unlink(f)
                print(f"peak RSS of panfs upload, {s}: {rss / MiB:.0f} MiB (target <= 128)")
        finally:
            drive.close()


if __name__ == "__main__":
    main()
