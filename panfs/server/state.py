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

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "part_bytes_received": self.part_bytes_received,
            "part_bytes_stored": self.part_bytes_stored,
            "parts_stored": self.parts_stored,
            "download_bytes_sent": self.download_bytes_sent,
        }


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

    def err_body(self, code: str, message: str) -> dict[str, str]:
        return {"code": code, "message": message, "requestId": secrets.token_hex(12).upper()}

    async def apply_fault(self, rule: Rule, send: Send, req: Request) -> bool:
        """Perform a reply-level fault; True when the request is answered (or dropped)."""
        p = rule.params
        if rule.action == "delay":
            await trio.sleep(float(p.get("ms", 0)) / 1000)
            return False
        if rule.action == "status":
            await req.rest()
            status = int(p["status"])
            body = p.get("body", "")
            if not isinstance(body, str):
                body = json.dumps(body)
            headers = {str(k): str(v) for k, v in (p.get("headers") or {}).items()}
            if status == 429 and "x-retry-after" not in headers:
                headers["x-retry-after"] = str(self.opts.retry_after_ms)
            self.stats.errors[f"fault:{status}"] += 1
            await reply(send, status, body.encode(), p.get("content_type", "text/plain"), headers)
            return True
        if rule.action == "drop":
            await req.rest()
            await drop(send)
            return True
        return False
