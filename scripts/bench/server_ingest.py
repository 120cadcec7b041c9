#!/usr/bin/env python3
"""Server ingest vs local disk: stream SIZE as 16 MiB parts to `panfs serve`, and write the same
bytes to a local file (fsync), in one run: three rounds, order alternating, `sync` before each,
medians compared (a shared disk swings single runs by half). Target: ratio ≥ 0.5.

    .venv/bin/python scripts/bench/server_ingest.py [--size 2GiB]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MiB, alternating, bench_tmp
from _drive import Drive

from panfs.config import parse_size

PART = 16 << 20


def local_write(tmp: Path, block: bytes, parts: int) -> float:
    os.sync()
    t0 = time.perf_counter()
    with open(tmp / "local.bin", "wb") as f:
        for _ in range(parts):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    took = time.perf_counter() - t0
    os.unlink(tmp / "local.bin")
    return took


def ingest(drive: Drive, block: bytes, parts: int, name: str) -> float:
    with httpx.Client(timeout=300) as http:
        h, c = drive.create_file(http, name, parts * PART, parts)
        os.sync()
        t0 = time.perf_counter()
        for info in c["part_info_list"]:
            r = http.put(info["upload_url"], content=block)
            assert r.status_code == 200, r.text
        took = time.perf_counter() - t0
        drive.complete(http, h, c)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2GiB")
    ap.add_argument("--rounds", type=int, default=3, help="local/server pairs, order alternating")
    a = ap.parse_args()
    parts = parse_size(a.size) // PART
    block = os.urandom(PART)
    locals_, servers = [], []
    with bench_tmp() as tmp:
        drive = Drive(tmp / "drive")
        try:
            for r, which in alternating(("local", "server"), a.rounds):
                if which == "local":
                    locals_.append(local_write(tmp, block, parts))
                else:
                    servers.append(ingest(drive, block, parts, f"ingest{r}.bin"))
        finally:
            drive.close()
    mib = parts * PART / MiB
    local, server = statistics.median(locals_), statistics.median(servers)
    print(f"{'what (median of ' + str(a.rounds) + ')':<28}{'seconds':>9}{'MiB/s':>9}   all runs, s")
    print(f"{'local disk write + fsync':<28}{local:>9.2f}{mib / local:>9.0f}   {locals_}")
    print(f"{'server ingest (16 MiB parts)':<28}{server:>9.2f}{mib / server:>9.0f}   {servers}")
    print(f"ratio server/local: {local / server:.2f} median to median (target >= 0.5)")


if __name__ == "__main__":
    main()
