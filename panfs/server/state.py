"""What every handler of the drive server shares: store, options, counters, faults, signer.

Owns: ``ServerState`` (the store, options, counters, fault rules, URL signer and the
lock that serialises part PUTs), the API's error type and error body, and
reply-level faults (``status``, ``delay``, ``drop``) that the Open API and the
upload/download hosts both perform. Must not: route requests or implement an
endpoint (``app.py``, ``files_api.py``, ``oss.py`` do).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import trio

from panfs.server.auth import Signer
from panfs.server.faults import Faults, Rule
from panfs.server.http import Request, Send, drop, reply
from panfs.server.options import Buckets, ServerOptions
from panfs.server.oss_errors import STATUS, xml_error
from panfs.server.store import Store

API = "/adrive/v1.0/"
OPS = {
    "user/getDriveInfo",
    "user/getSpaceInfo",
    "openFile/list",
    "openFile/get",
    "openFile/get_by_path",
    "openFile/create",
    "openFile/getUploadUrl",
    "openFile/listUploadedParts",
    "openFile/complete",
    "openFile/update",
    "openFile/move",
    "openFile/recyclebin/trash",
    "openFile/delete",
    "openFile/getDownloadUrl",
}
DRIVE_ID = "10001"
MAX_NAME = 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def iso(t: float) -> str:
    return (
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(t * 1000) % 1000:03d}Z"
    )


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.part_bytes_received = 0
        self.part_bytes_stored = 0
        self.parts_stored = 0
        self.download_bytes_sent = 0
        self.too_many_requests = 0  # every 429 answered, by the rate limits or a fault rule
        self.too_many_requests_by_op: Counter[str] = Counter()
        self.sessions_expired = 0  # upload sessions ended server-side mid-upload

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "part_bytes_received": self.part_bytes_received,
            "part_bytes_stored": self.part_bytes_stored,
            "parts_stored": self.parts_stored,
            "download_bytes_sent": self.download_bytes_sent,
            "too_many_requests": self.too_many_requests,
            "too_many_requests_by_op": dict(self.too_many_requests_by_op),
            "sessions_expired": self.sessions_expired,
        }

    def throttled(self, op: str) -> None:
        self.too_many_requests += 1
        self.too_many_requests_by_op[op] += 1


class PayloadTooLarge(ApiError):
    """413 with a plain-text body, exactly as the service's gateway answers."""

    def __init__(self) -> None:
        super().__init__(413, "PayloadTooLarge", "Payload Too Large")


class ServerState:
    def __init__(
        self,
        store: Store,
        options: ServerOptions,
        admin_token: str,
        public_url: str,
        faults: Faults,
    ) -> None:
        self.store = store
        self.opts = options
        self.admin_token = admin_token
        self.url = public_url
        self.faults = faults
        self.stats = Stats()
        self.buckets = Buckets(options.rate_limits)
        secret = store.get_meta("secret")
        if secret is None:
            secret = secrets.token_hex(32)
            store.set_meta("secret", secret)
        self.user_id = store.get_meta("user_id") or "u" + secrets.token_hex(8)
        store.set_meta("user_id", self.user_id)
        self.signer = Signer(bytes.fromhex(secret), self.user_id)
        self.current_token = ""  # the Bearer token of the request being handled (proof_code)
        self.put_lock = trio.Lock()  # serialises part PUTs: the sequential rule needs one writer
        self.part_puts = 0  # part PUTs seen (--oss-5xx-every counts them)
        self.expired_names: set[tuple[str, str]] = set()  # --expire-session-after-parts: once each

    def err_body(self, code: str, message: str) -> dict[str, str]:
        return {"code": code, "message": message, "requestId": secrets.token_hex(12).upper()}

    def expire_session(self, upload_id: str) -> None:
        """End an open upload session server-side (its parts stay unreachable)."""
        sess = self.store.session(upload_id)
        if sess is not None and sess.state == "open":
            self.store.set_session_state(upload_id, "expired")
            self.stats.sessions_expired += 1

    def maybe_expire_after_parts(self, upload_id: str, stored: int) -> None:
        """--expire-session-after-parts N: the session ends once it holds N parts, once per
        folder + name per server run (so the next session of that file can finish)."""
        n = self.opts.expire_session_after_parts
        if n <= 0 or stored < n:
            return
        sess = self.store.session(upload_id)
        f = self.store.get(sess.file_id) if sess else None
        if sess is None or f is None or stored >= sess.part_count:
            return  # the last part: nothing is left to fail
        key = (f.parent_id, f.name)
        if key not in self.expired_names:
            self.expired_names.add(key)
            self.expire_session(upload_id)

    async def discard_body(self, req: Request) -> None:
        """Read and throw away the rest of a body; a part's bytes still count as received."""
        n = await req.rest()
        if req.path.startswith("/oss/"):
            self.stats.part_bytes_received += n

    async def apply_fault(self, rule: Rule, send: Send, req: Request, op: str = "") -> bool:
        """Perform a reply-level fault; True when the request is answered (or dropped)."""
        p = rule.params
        if rule.action == "delay":
            await trio.sleep(float(p.get("ms", 0)) / 1000)
            return False
        if rule.action == "oss_error":
            await self.discard_body(req)
            code = str(p["code"])
            status = int(p.get("status") or STATUS.get(code, 500))
            self.stats.errors[code] += 1
            await reply(send, status, xml_error(code), "application/xml")
            return True
        if rule.action == "status":
            await self.discard_body(req)
            status = int(p["status"])
            body = p.get("body", "")
            if not isinstance(body, str):
                body = json.dumps(body)
            headers = {str(k): str(v) for k, v in (p.get("headers") or {}).items()}
            if status == 429:
                headers.setdefault("x-retry-after", str(self.opts.retry_after_ms))
                self.stats.throttled(op or rule.op)
            self.stats.errors[f"fault:{status}"] += 1
            await reply(send, status, body.encode(), p.get("content_type", "text/plain"), headers)
            return True
        if rule.action == "drop":
            await self.discard_body(req)
            await drop(send)
            return True
        return False
