#!/usr/bin/env python3
"""Server ingest vs local disk: stream SIZE as 16 MiB parts to `panfs serve`, and write the same
bytes to a local file (fsync), in one run. Prints both throughputs and the ratio (target ≥ 0.5).

    .venv/bin/python scripts/bench/server_ingest.py [--size 2GiB]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _drive import Drive

from panfs.config import parse_size

PART = 16 << 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="2GiB")
    size = parse_size(ap.parse_args().size)
    parts = size // PART
    block = os.urandom(PART)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        t0 = time.perf_counter()
        with open(Path(tmp) / "local.bin", "wb") as f:
            for _ in range(parts):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        local = time.perf_counter() - t0
        os.unlink(Path(tmp) / "local.bin")
        drive = Drive(Path(tmp) / "drive")
        try:
            access, drive_id = drive.access()
            h = {"Authorization": f"Bearer {access}"}
            with httpx.Client(timeout=300) as http:
                c = http.post(
                    f"{drive.url}/adrive/v1.0/openFile/create",
                    headers=h,
                    json={
                        "drive_id": drive_id,
                        "parent_file_id": "root",
                        "name": "ingest.bin",
                        "type": "file",
                        "size": parts * PART,
                        "part_info_list": [{"part_number": i} for i in range(1, parts + 1)],
                    },
                ).json()
                t0 = time.perf_counter()
                for info in c["part_info_list"]:
                    r = http.put(info["upload_url"], content=block)
                    assert r.status_code == 200, r.text
                server = time.perf_counter() - t0
                done = http.post(
                    f"{drive.url}/adrive/v1.0/openFile/complete",
                    headers=h,
                    json={
                        "drive_id": drive_id,
                        "file_id": c["file_id"],
                        "upload_id": c["upload_id"],
                    },
                )
                assert done.status_code == 200, done.text
        finally:
            drive.close()
    mib = parts * PART / (1 << 20)
    print(f"{'what':<28}{'seconds':>9}{'MiB/s':>9}")
    print(f"{'local disk write + fsync':<28}{local:>9.2f}{mib / local:>9.0f}")
    print(f"{'server ingest (16 MiB parts)':<28}{server:>9.2f}{mib / server:>9.0f}")
    print(f"ratio server/local: {local / server:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
