"""``panfs upload`` converges under every reading of the protocol the drive server offers.

For each server variant (``docs/protocol-assumptions.md``) and ``--profile strict``:
files of 0 B, 1 part, 3 parts and 20 parts (100 KiB parts) are uploaded by one
``panfs upload``, which is SIGKILLed at two seeded random moments and then run to
the end. Every file must read back byte-identical through the Open API, and the
part bytes the server received (every body read off the wire, refused ones too)
must stay within the bound stated per variant.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.drive import DriveReader, DriveServer
from tests.support.procs import PANFS, check_logs, kill9
from tests.uploader.conftest import Uploads, make_file

pytestmark = pytest.mark.crash

KiB = 1 << 10
PART = 100 * KiB
SIZES = {
    "empty.bin": 0,
    "one.bin": 60 * KiB,
    "three.bin": 3 * PART - 7,
    "twenty.bin": 20 * PART - 3,
}
PARTS = 1 + 3 + 20
TOTAL = sum(SIZES.values())
KILLS = 2
CONCURRENCY = 2  # files in flight at once: a kill can cut one part of each


# variant: (server options, extra bytes allowed beyond TOTAL + KILLS * CONCURRENCY parts, why)
# a kill can leave both files in flight with such a part: each sends again what it had sent
_UNVERIFIABLE = KILLS * (SIZES["twenty.bin"] + SIZES["three.bin"])
VARIANTS: dict[str, tuple[list[str], int]] = {
    "default": ([], 0),
    # a part stored but not journaled (the kill came while its answer was on the way) has
    # no ETag to verify it by: its session starts over, so a kill may cost a whole file
    "no-etag": (["--parts-listing", "no-etag"], _UNVERIFIABLE),
    "no-size": (["--parts-listing", "no-size"], 0),
    "bare": (["--parts-listing", "bare"], _UNVERIFIABLE),
    # an opaque ETag verifies nothing either
    "opaque-etag": (["--etag", "opaque"], _UNVERIFIABLE),
    "complete-without-hash": (["--complete-without-hash"], 0),
    "declared-parts-only": (["--declared-parts-only"], 0),
    # every 10th part body is read and refused with 500/503 XML: one part in ten again
    "oss-5xx": (["--oss-5xx-every", "10"], (PARTS // 10 + KILLS) * PART),
    # the session of each file dies after 3 parts, once: up to 3 parts of each file again
    "session-expires": (["--expire-session-after-parts", "3"], 3 * 3 * PART),
    "strict": (["--profile", "strict"], _UNVERIFIABLE + (PARTS // 10 + KILLS) * PART + 9 * PART),
}


def _kill_at(u: Uploads, src: Path, target: int) -> None:
    """Run the upload and SIGKILL it once the server has read ``target`` part bytes (or
    when it ends by itself first)."""
    with open(u.log, "a") as err:
        p = subprocess.Popen(
            [*PANFS, "upload", "--json", "--config", str(u.config), str(src), "/m"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            if u.drive.stats()["part_bytes_received"] >= target:
                break
            time.sleep(0.03)
    finally:
        kill9(p)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_upload_killed_twice_converges_under_each_reading(variant: str, tmp_path: Path) -> None:
    options, extra = VARIANTS[variant]
    with DriveServer(tmp_path / "drive", *options) as drive:
        # slow parts, so the kills land mid-upload
        drive.set_faults([{"op": "put_part", "action": "delay", "ms": 5}])
        u = Uploads(tmp_path, drive, part_size="100KiB", concurrency=CONCURRENCY)
        src = tmp_path / "src"
        src.mkdir()
        for name, size in SIZES.items():
            make_file(src / name, size)
        rng = random.Random(f"matrix-{variant}")
        for k in range(KILLS):  # two seeded points of the upload's progress
            at = drive.stats()["part_bytes_received"]
            _kill_at(u, src, at + rng.randrange(1, TOTAL // (KILLS + 1 - k)))
        drive.set_faults([])
        u.run(src, "/m")
        reader = DriveReader(drive)
        for name in SIZES:
            local = (src / name).read_bytes()
            meta = reader.get(f"/m/src/{name}")
            assert meta is not None, name
            assert meta["size"] == len(local)
            assert meta["content_hash"].upper() == hashlib.sha1(local).hexdigest().upper()
        # and the bytes of the biggest, read back
        assert reader.read("/m/src/twenty.bin") == (src / "twenty.bin").read_bytes()
        received = drive.stats()["part_bytes_received"]
        bound = TOTAL + KILLS * CONCURRENCY * PART + extra
        assert received <= bound, f"{variant}: received {received}, bound {bound}"
        check_logs(u.log, allow=[r"killed while refreshing the access token"])
