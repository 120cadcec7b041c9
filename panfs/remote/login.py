"""The HTTP calls of a QR-code login and of a token grant, the app's own or through a proxy.

Owns: asking for a QR-code login (``POST …/oauth/authorize/qrcode`` → ``sid``,
``qrCodeUrl``), polling its status (``GET /oauth/qrcode/{sid}/status``), and
exchanging a grant for tokens at a token URL in either shape public token proxies use:
``json`` (POST a JSON body, answered like ``/oauth/access_token``) or ``query`` (GET
with the fields as query parameters, answered ``{refresh_token, access_token, text}``).
Every failure is a ``RemoteError`` with one line naming the problem. Must not: draw,
print, read or write files, or decide how long to wait (the caller sets the deadline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from panfs.errors import AuthError, NetworkError, RemoteError, TransientError

SCOPES = ["user:base", "file:all:read", "file:all:write"]
# the statuses a QR-code login goes through (protocol reference §13.11)
WAITING, SCANNED, SUCCESS, EXPIRED = "WaitLogin", "ScanSuccess", "LoginSuccess", "QRCodeExpired"


@dataclass(frozen=True)
class QrLogin:
    sid: str
    qr_code_url: str


@dataclass(frozen=True)
class Tokens:
    refresh_token: str
    access_token: str
    expires_in: float


def _json(resp: httpx.Response, what: str) -> dict[str, Any]:
    """The answer's JSON object, or a one-line error with the status and the service's words."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 500 or resp.status_code == 429:
        raise TransientError(
            f"{what}: the server answered HTTP {resp.status_code}; try again in a minute",
            status=resp.status_code,
            body_start=resp.text[:200],
        )
    if not isinstance(data, dict):
        raise RemoteError(
            f"{what}: HTTP {resp.status_code} with an answer that is not a JSON object "
            f"({resp.text[:80]!r}); check the URL",
            status=resp.status_code,
            body_start=resp.text[:200],
        )
    if resp.status_code >= 400:
        code = str(data.get("code") or "")
        said = str(data.get("message") or data.get("text") or resp.reason_phrase)
        raise AuthError(
            f"{what}: refused ({code or resp.status_code}: {said})",
            status=resp.status_code,
            code=code,
            body_start=resp.text[:200],
        )
    return data


async def _send(http: httpx.AsyncClient, method: str, url: str, what: str, **kw: Any) -> Any:
    try:
        return await http.request(method, url, **kw)
    except httpx.TransportError as e:
        raise NetworkError(f"{what}: cannot reach {url}: {type(e).__name__}: {e}") from None


async def request_qrcode(http: httpx.AsyncClient, url: str, credentials: dict[str, str]) -> QrLogin:
    """``POST url`` (an ``…/oauth/authorize/qrcode``) with the app's credentials, if any."""
    body = {**credentials, "scopes": SCOPES, "width": 300, "height": 300}
    resp = await _send(http, "POST", url, "asking for a QR code", json=body)
    data = _json(resp, "asking for a QR code")
    sid, image = data.get("sid"), data.get("qrCodeUrl")
    if not isinstance(sid, str) or not sid:
        raise RemoteError(
            f"asking for a QR code: the answer has no sid ({resp.text[:80]!r}); check the URL",
            status=resp.status_code,
        )
    return QrLogin(sid, str(image or ""))


async def qrcode_status(http: httpx.AsyncClient, endpoint: str, sid: str) -> tuple[str, str]:
    """``(status, authCode)`` of a pending login."""
    url = f"{endpoint}/oauth/qrcode/{sid}/status"
    resp = await _send(http, "GET", url, "waiting for the QR code's approval")
    data = _json(resp, "waiting for the QR code's approval")
    return str(data.get("status") or ""), str(data.get("authCode") or "")


async def grant_tokens(
    http: httpx.AsyncClient, token_url: str, style: str, fields: dict[str, str]
) -> Tokens:
    """Exchange a grant (``grant_type`` + ``code`` or ``refresh_token``) for tokens."""
    what = f"getting tokens from {token_url}"
    if style == "query":
        resp = await _send(http, "GET", token_url, what, params=fields)
    else:
        resp = await _send(http, "POST", token_url, what, json=fields)
    data = _json(resp, what)
    refresh = data.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        said = data.get("text") or data.get("message") or resp.text[:80]
        raise AuthError(f"{what}: no refresh_token in the answer ({said})", status=200)
    return Tokens(
        refresh,
        str(data.get("access_token") or ""),
        float(data.get("expires_in") or 7200),
    )
