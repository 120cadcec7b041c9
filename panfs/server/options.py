"""Server options: every behaviour the protocol leaves open, with its documented default.

Owns: the ``ServerOptions`` dataclass, the profiles (named sets of options, the
harsh readings of ``docs/protocol-assumptions.md`` under ``strict``), the official
rate limits, and the rate-limit token buckets. Must not: do I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Per user per app, as OpenList's limiter quotes the official document: openFile/list 4/s,
# getDownloadUrl 1/s, and one budget of 15/s shared by every other API call ("*"). The burst
# is one second's worth. The OAuth endpoints and the upload/download hosts are not limited.
OFFICIAL_RATE_LIMITS: dict[str, tuple[float, float]] = {
    "list": (4.0, 4.0),
    "getDownloadUrl": (1.0, 1.0),
    "*": (15.0, 15.0),
}
UNLIMITED = {"access_token", "authorize_qrcode", "qrcode_status"}  # unless named explicitly

PARTS_LISTINGS = ("full", "no-etag", "no-size", "bare")


@dataclass
class ServerOptions:
    access_token_lifetime: float = 7200.0  # §1.1: 2 h
    refresh_token_lifetime: float = 90 * 86400.0  # §1.1: 90 days
    upload_url_lifetime: float = 3600.0  # §4.4: ~1 h
    download_url_lifetime: float = 900.0  # §4.11: expire_sec default
    download_url_style: str = "OSS2"  # or OSS4 (x-oss-date + relative x-oss-expires)
    session_lifetime: float = 10 * 86400.0  # §4.1: PDS keeps parts 10 days
    total_size: int = 1 << 40  # quota: 1 TiB
    max_file_size: int | None = None  # per-file cap -> 413 text
    list_page_size: int = 100  # openFile/list clamps `limit` to this
    parts_page_size: int = 100  # listUploadedParts parts per page (§9.17)
    lenient_complete: bool = False  # complete with the uploaded prefix (§4.10)
    upload_id_status: int = 400  # HTTP status of NotFound.UploadId (§12)
    min_part_size: int = 100 * 1024  # non-last part below this -> part entity too small
    rate_limits: dict[str, tuple[float, float]] = field(
        default_factory=lambda: dict(OFFICIAL_RATE_LIMITS)
    )  # op (or "*", shared by the others) -> (rate, burst)
    retry_after_ms: int = 1000
    seed: int = 0
    # the readings of docs/protocol-assumptions.md
    parts_listing: str = "full"  # full | no-etag | no-size | bare
    etag: str = "md5"  # md5 | opaque
    complete_without_hash: bool = False
    move_new_name: str = "rename"  # rename | on-conflict
    trash_trashed: str = "not-found"  # trash of an item in the recycle bin: not-found | recycle-bin
    declared_parts_only: bool = False
    oss_5xx_every: int = 0  # every Nth part PUT answers 500/503 OSS XML (0: never)
    expire_session_after_parts: int = 0  # a session expires once it has N parts (0: never)
    download_url_missing: list[str] = field(default_factory=list)  # name globs without `url`
    download_url_missing_as: str = "null"  # null | empty
    streams_url: bool = True  # streamsUrl beside a missing url
    qrcode_lifetime: float = 180.0  # a QR-code login's life


# What each profile sets; options given on the command line win over the profile.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "strict": {
        "parts_listing": "bare",
        "etag": "opaque",
        "complete_without_hash": True,
        "move_new_name": "on-conflict",
        "trash_trashed": "recycle-bin",
        "declared_parts_only": True,
        "oss_5xx_every": 10,
        "expire_session_after_parts": 3,
        "download_url_missing": ["*.livp"],
        "upload_id_status": 404,
        "download_url_style": "OSS4",
    },
}


class Buckets:
    """Token bucket per endpoint: ``rate`` requests/s, ``burst`` at most.

    An op named in ``limits`` has a bucket of its own; every other op shares the ``*``
    bucket (one budget for "every other call"), except the ``UNLIMITED`` ones.
    """

    def __init__(self, limits: dict[str, tuple[float, float]]) -> None:
        self.limits = limits
        self.state: dict[str, tuple[float, float]] = {}

    def key(self, op: str) -> str | None:
        if op in self.limits:
            return op
        if op in UNLIMITED or "*" not in self.limits:
            return None
        return "*"

    def take(self, op: str) -> float:
        """0 when allowed, else seconds until the next token."""
        key = self.key(op)
        if key is None:
            return 0.0
        rate, burst = self.limits[key]
        now = time.monotonic()
        tokens, last = self.state.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= 1:
            self.state[key] = (tokens - 1, now)
            return 0.0
        self.state[key] = (tokens, now)
        return (1 - tokens) / rate if rate > 0 else 60.0
