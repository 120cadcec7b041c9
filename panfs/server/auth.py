"""Tokens and signatures of the drive server: JWT-shaped tokens, pre-signed URLs.

Owns: minting and checking access tokens (stateless, HMAC-signed, with ``exp``),
minting refresh tokens (the store remembers them: single-use), and signing /
verifying upload and download URLs so they cannot be forged or replayed past
expiry. Must not: do HTTP or storage beyond what it is handed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Signer:
    def __init__(self, secret: bytes, user_id: str) -> None:
        self.secret = secret
        self.user_id = user_id

    def _mac(self, msg: str) -> str:
        return _b64(hmac.new(self.secret, msg.encode(), hashlib.sha256).digest())

    def token(self, kind: str, lifetime: float) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = {
            "sub": self.user_id,
            "typ": kind,
            "exp": time.time() + lifetime,
            "jti": secrets.token_hex(8),
        }
        body = _b64(json.dumps(payload).encode())
        return f"{header}.{body}.{self._mac(header + '.' + body)}"

    def check(self, token: str, kind: str) -> dict[str, Any] | None:
        """The payload of a well-signed token of ``kind`` (expired or not), else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        if not hmac.compare_digest(parts[2], self._mac(parts[0] + "." + parts[1])):
            return None
        try:
            payload: dict[str, Any] = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return payload if payload.get("typ") == kind else None

    def sign_url(self, path: str, params: dict[str, str]) -> str:
        msg = path + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))
        return self._mac(msg)

    def verify_url(self, path: str, query: dict[str, str]) -> bool:
        sig = query.get("x-oss-signature", "")
        params = {k: v for k, v in query.items() if k != "x-oss-signature"}
        return hmac.compare_digest(sig, self.sign_url(path, params))
