"""Server options: every behaviour the protocol leaves open, with its documented default.

Owns: the ``ServerOptions`` dataclass and rate-limit token buckets. Must not: do I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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
    rate_limits: dict[str, tuple[float, float]] = field(default_factory=dict)  # op -> (rate, burst)
    retry_after_ms: int = 1000
    seed: int = 0


class Buckets:
    """Token bucket per endpoint: ``rate`` requests/s, ``burst`` at most."""

    def __init__(self, limits: dict[str, tuple[float, float]]) -> None:
        self.limits = limits
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, op: str) -> float:
        """0 when allowed, else seconds until the next token."""
        limit = self.limits.get(op) or self.limits.get("*")
        if limit is None:
            return 0.0
        rate, burst = limit
        now = time.monotonic()
        tokens, last = self.state.get(op, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens >= 1:
            self.state[op] = (tokens - 1, now)
            return 0.0
        self.state[op] = (tokens, now)
        return (1 - tokens) / rate if rate > 0 else 60.0
