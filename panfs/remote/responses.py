"""The one response parser: status first, then JSON, then XML, then raw text.

Owns: turning any HTTP answer of the API, upload or download host into a value or
a classified ``RemoteError`` carrying status, code and the start of the body; it
never assumes JSON (a plain ``Payload Too Large`` or an HTML 504 page is an error
with a reason, not a crash). Must not: retry or sleep.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from panfs.errors import (
    PartConflict,
    PartError,
    PermanentError,
    QuotaError,
    RateLimitedError,
    RemoteError,
    RemoteExistsError,
    RemoteNotFoundError,
    SessionGone,
    TooLargeError,
    TransientError,
)

_XML_FIELD = re.compile(r"<(\w+)>([^<]*)</\1>")


class PreHashMatchedError(PermanentError):
    """409 PreHashMatched: the drive may have this content; retry with hash + proof."""


class AccessTokenError(PermanentError):
    """401 AccessTokenExpired / AccessTokenInvalid: refresh and retry once."""


class UrlExpiredError(PermanentError):
    """A download URL expired (403 AccessDenied "Request has expired.")."""


# the session is gone: the API host's code and the upload host's
SESSION_GONE = ("NotFound.UploadId", "NoSuchUpload")
# the upload host's "your idea of the parts is wrong": re-list, realign
PART_CONFLICTS = ("PartAlreadyExist", "PartNotSequential")


def xml_fields(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _XML_FIELD.finditer(text)}


def classify(status: int, body: bytes, headers: dict[str, str]) -> RemoteError:
    text = body.decode("utf-8", errors="replace")
    start = text[:200].replace("\n", " ")
    code, message = "", start.strip()
    data: Any = None
    try:
        data = json.loads(text) if text.strip().startswith("{") else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = str(data.get("code") or data.get("error") or "")
        message = str(data.get("message") or data.get("error") or message)
    elif text.lstrip().startswith("<?xml") or "<Error>" in text:
        f = xml_fields(text)
        code, message = f.get("Code", ""), f.get("Message", message)
    kw: dict[str, Any] = {"status": status, "code": code, "body_start": start}
    if status == 429:
        try:
            wait = float(headers.get("x-retry-after", "1000")) / 1000
        except ValueError:
            wait = 1.0
        return RateLimitedError(message or "Too Many Requests", retry_after=wait, **kw)
    if status >= 500 or status in (408,):
        return TransientError(message or f"HTTP {status}", **kw)
    if status == 413:
        return TooLargeError(
            "the drive refuses files this large (Payload Too Large); "
            "a bigger plan or a smaller file is needed",
            **kw,
        )
    if code in ("AccessTokenExpired", "AccessTokenInvalid"):
        return AccessTokenError(message, **kw)
    if code == "PreHashMatched":
        return PreHashMatchedError(message, **kw)
    if code.startswith("QuotaExhausted"):
        return QuotaError("the drive is full (QuotaExhausted); free space on the drive", **kw)
    if code in SESSION_GONE:
        return SessionGone(message, **kw)
    if code.startswith("NotFound") or (status == 404 and not code):
        return RemoteNotFoundError(message, **kw)
    if code.startswith("AlreadyExist"):
        return RemoteExistsError(message, **kw)
    return PermanentError(message or f"HTTP {status}", **kw)


def range_headers(start: int, end: int, user_agent: str = "") -> dict[str, str]:
    """A ranged GET of bytes [start, end) of a download URL, as sent by either path."""
    headers = {
        "Range": f"bytes={start}-{end - 1}",
        # the bytes are cached and hashed as sent, never a compressed form
        "Accept-Encoding": "identity",
    }
    if user_agent:
        headers["User-Agent"] = user_agent
    return headers


def wrong_range(status: int, headers: Mapping[str, str], start: int) -> str | None:
    """A 206 whose ``Content-Range`` says it holds other bytes than asked for (a proxy or
    CDN answering another request's range): described, to be fetched again. A 206 that
    does not say is taken as asked (some servers leave the header out)."""
    got = headers.get("content-range", "")
    if status != 206 or not got or got.startswith(f"bytes {start}-"):
        return None
    return f"a 206 for another range ({got[:60]!r}, asked from {start})"


def classify_download(status: int, body: bytes, headers: dict[str, str]) -> RemoteError:
    """A download host's refusal; an expired URL (403 AccessDenied "Request has expired")
    is ``UrlExpiredError``: the caller asks for a fresh URL."""
    err = classify_oss(status, body, headers)
    if isinstance(err, PartError) and err.url_expired:
        return UrlExpiredError(err.message, status=403, code=err.code, body_start=err.body_start)
    return err


def classify_oss(status: int, body: bytes, headers: dict[str, str]) -> RemoteError:
    """Upload/download host answers: XML errors become ``PartError`` with their fields.
    A 5xx or 429 is transient whatever its body (OSS answers ``InternalError`` /
    ``ServiceUnavailable`` in XML); only the refusals understood here are permanent."""
    text = body.decode("utf-8", errors="replace")
    f = xml_fields(text) if "<Error>" in text else {}
    if not f.get("Code") or status >= 500 or status in (408, 429):
        return classify(status, body, headers)
    number = f.get("PartNumber")
    etag = f.get("ETag", "").strip('"').upper() or None
    if f["Code"] == "NoSuchUpload":
        return SessionGone(
            f.get("Message", "") or "the upload session is gone",
            status=status,
            code=f["Code"],
            body_start=text[:200].replace("\n", " "),
        )
    cls = PartConflict if f["Code"] in PART_CONFLICTS else PartError
    return cls(
        f.get("Message", ""),
        status=status,
        code=f["Code"],
        body_start=text[:200].replace("\n", " "),
        part_number=int(number) if number and number.isdigit() else None,
        etag=etag,
    )
