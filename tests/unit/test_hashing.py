"""``sha1_hasher`` going on from a hasher over a prefix equals hashing the whole prefix anew."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from panfs.hashing import sha1_hasher


async def test_sha1_hasher_goes_on_from_a_shorter_prefix(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    src = tmp_path / "f"
    src.write_bytes(data)
    base = await sha1_hasher(str(src), 1_000_000)
    for length in (1_000_000, 1_000_001, 2_500_000, len(data)):
        got = await sha1_hasher(str(src), length, base, 1_000_000)
        assert got.hexdigest() == hashlib.sha1(data[:length]).hexdigest()
    assert base.hexdigest() == hashlib.sha1(data[:1_000_000]).hexdigest()  # left as it was
    # a base beyond the wanted length is not used
    behind = await sha1_hasher(str(src), 500_000, base, 1_000_000)
    assert behind.hexdigest() == hashlib.sha1(data[:500_000]).hexdigest()
