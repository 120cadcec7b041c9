"""The drive server's OAuth side: token grants, QR-code logins, and two token-proxy shapes.

Owns: ``POST /oauth/access_token`` (``refresh_token`` and ``authorization_code``
grants), the QR-code authorization (``POST /oauth/authorize/qrcode`` → ``qrCodeUrl``,
``sid``; ``GET /oauth/qrcode/{sid}/status`` → ``status``, ``authCode``), the pending
logins the admin moves along (scan, approve, expire), single-use authorization codes
(10 minutes), and stand-ins for public token proxies: the same JSON without the app's
credentials under ``/proxy/oauth/…``, and ``GET /proxy/token?…`` answering
``{refresh_token, access_token, text}``. Pending logins live in memory: a restarted
server has none. Must not: route, count or rate-limit requests (``app.py``), or touch
files or SQL directly.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from panfs.server.files_api import FilesApi
from panfs.server.state import ApiError

CODE_LIFETIME = 600.0  # an authorization code: 10 minutes, single use (iOS SDK comment)
SCOPES = {"user:base", "file:all:read", "file:all:write"}


@dataclass
class Login:
    sid: str
    created: float
    status: str = "WaitLogin"  # WaitLogin | ScanSuccess | LoginSuccess | QRCodeExpired
    code: str = ""


class OAuthApi(FilesApi):
    logins: dict[str, Login]
    codes: dict[str, float]  # authorization code -> issued at (removed once used)

    def init_oauth(self) -> None:
        self.logins = {}
        self.codes = {}

    # -- the app's credentials ------------------------------------------------------
    def check_client(self, body: dict[str, Any]) -> None:
        if body.get("client_id") != self.store.get_meta("client_id"):
            raise ApiError(400, "InvalidClientId", "client_id is invalid")
        if body.get("client_secret", "") != self.store.get_meta("client_secret"):
            raise ApiError(400, "InvalidClientSecret", "client_secret is invalid")

    def with_client(self, body: dict[str, Any]) -> dict[str, Any]:
        """What a token proxy does: the app's credentials added server-side."""
        return {
            **body,
            "client_id": self.store.get_meta("client_id"),
            "client_secret": self.store.get_meta("client_secret"),
        }

    # -- POST /oauth/access_token -----------------------------------------------------
    def access_token(self, body: dict[str, Any]) -> dict[str, Any]:
        grant = body.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            raise ApiError(400, "InvalidGrantType", "grant_type is not supported")
        self.check_client(body)
        if grant == "authorization_code":
            code = str(body.get("code") or "")
            issued = self.codes.pop(code, None)
            if issued is None or time.time() - issued > CODE_LIFETIME:
                raise ApiError(400, "InvalidCode", "code is invalid or expired")
            return self.grant()
        token = str(body.get("refresh_token") or "")
        found = self.store.use_refresh_token(token)
        if found is None:
            raise ApiError(401, "RefreshTokenInvalid", "refresh_token is invalid")
        used, issued = found
        if used:
            raise ApiError(401, "RefreshTokenInvalid", "refresh_token is invalid (already used)")
        if time.time() - issued > self.opts.refresh_token_lifetime:
            raise ApiError(401, "RefreshTokenExpired", "expired refresh_token")
        return self.grant()

    def grant(self) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": self.new_access_token(),
            "refresh_token": self.new_refresh_token(),
            "expires_in": int(self.opts.access_token_lifetime),
        }

    def new_access_token(self) -> str:
        return self.signer.token("access", self.opts.access_token_lifetime)

    def new_refresh_token(self) -> str:
        token = self.signer.token("refresh", self.opts.refresh_token_lifetime)
        self.store.new_refresh_token(token)
        return token

    # -- QR-code login ----------------------------------------------------------------
    def authorize_qrcode(self, body: dict[str, Any]) -> dict[str, Any]:
        self.check_client(body)
        scopes = body.get("scopes")
        if not isinstance(scopes, list) or not scopes or not set(scopes) <= SCOPES:
            raise ApiError(400, "InvalidParameter.Scopes", f"scopes must be among {sorted(SCOPES)}")
        sid = secrets.token_hex(16)
        self.logins[sid] = Login(sid, time.time())
        return {"qrCodeUrl": f"{self.url}/oauth/qrcode/{sid}", "sid": sid}

    def login(self, sid: str) -> Login | None:
        login = self.logins.get(sid)
        if (
            login is not None
            and login.status != "LoginSuccess"
            and time.time() - login.created > self.opts.qrcode_lifetime
        ):
            login.status = "QRCodeExpired"
        return login

    def qrcode_status(self, sid: str) -> dict[str, Any]:
        login = self.login(sid)
        if login is None:  # unknown or from before a restart: what the phone would see
            return {"status": "QRCodeExpired"}
        answer: dict[str, Any] = {"status": login.status}
        if login.status == "LoginSuccess":
            answer["authCode"] = login.code
        return answer

    def authorize_page(self, sid: str) -> str:
        login = self.login(sid)
        state = login.status if login else "QRCodeExpired"
        return (
            "<!doctype html><title>panfs drive: authorize</title>"
            f"<p>Login {sid}: {state}.</p><p>This drive server approves logins with "
            f"<code>POST /admin/qrcode/{sid}/approve</code> (admin token).</p>"
        )

    def admin_login(self, sid: str, action: str) -> dict[str, Any]:
        """The phone's side, for tests: ``scan``, ``approve`` or ``expire`` a pending login."""
        login = self.login(sid)
        if login is None:
            raise ApiError(404, "NotFound.Sid", f"no pending login {sid}")
        if login.status in ("QRCodeExpired", "LoginSuccess"):
            raise ApiError(400, "InvalidParameter.Sid", f"login {sid} is {login.status}")
        if action == "scan":
            login.status = "ScanSuccess"
        elif action == "approve":
            login.status = "LoginSuccess"
            login.code = secrets.token_hex(16)
            self.codes[login.code] = time.time()
        elif action == "expire":
            login.status = "QRCodeExpired"
        else:
            raise ApiError(400, "InvalidParameter.Action", "action: scan, approve or expire")
        return {"sid": sid, "status": login.status}

    def pending_logins(self) -> list[dict[str, Any]]:
        out = []
        for sid in list(self.logins):
            login = self.login(sid)
            assert login is not None
            out.append({"sid": sid, "status": login.status})
        return out

    # -- token proxies --------------------------------------------------------------
    def proxy_access_token(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /proxy/oauth/access_token``: the JSON shape, the app's credentials added."""
        return self.access_token(self.with_client(body))

    def proxy_qrcode(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /proxy/oauth/authorize/qrcode``: a QR login for the proxy's app."""
        return self.authorize_qrcode(self.with_client(body))

    def proxy_token_query(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``GET /proxy/token?grant_type=…&refresh_token=…|code=…`` → ``{refresh_token,
        access_token, text}``; ``text`` says what went wrong."""
        body: dict[str, Any] = dict(query)
        body.setdefault("grant_type", "authorization_code" if "code" in body else "refresh_token")
        try:
            got = self.access_token(self.with_client(body))
        except ApiError as e:
            return e.status, {"refresh_token": "", "access_token": "", "text": e.message}
        return 200, {
            "refresh_token": got["refresh_token"],
            "access_token": got["access_token"],
            "expires_in": got["expires_in"],
            "text": "",
        }
