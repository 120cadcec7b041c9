"""Expiry of pre-signed URLs, in the three signature styles the service uses.

Owns: reading when an upload or download URL stops working: V1 ``Expires=<abs>``,
OSS2/OSS3 ``x-oss-expires=<abs>``, OSS4 ``x-oss-date`` + relative ``x-oss-expires``.
Must not: do I/O.
"""

from __future__ import annotations

import calendar
import time
from urllib.parse import parse_qs, urlsplit

UNKNOWN_LIFETIME = 900.0


def url_expiry(url: str, now: float | None = None) -> float:
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    now = time.time() if now is None else now
    try:
        if q.get("x-oss-signature-version", "").upper().startswith("OSS4"):
            t = time.strptime(q["x-oss-date"], "%Y%m%dT%H%M%SZ")
            return calendar.timegm(t) + float(q["x-oss-expires"])
        if "x-oss-expires" in q:
            return float(q["x-oss-expires"])
        if "Expires" in q:
            return float(q["Expires"])
    except (KeyError, ValueError):
        pass
    return now + UNKNOWN_LIFETIME
