"""The drive server's ASGI app: routing, auth, rate limits, faults, counters, admin.

Owns: the request pipeline (route → count → rate limit → fault → handler), Bearer
checks, and the admin endpoints (counters, fault rules, minting refresh tokens,
moving QR-code logins along). The endpoints live in ``files_api.py``, token grants
and logins in ``oauth.py``, the upload and download hosts in ``oss.py``, storage in
``store.py``. Must not: touch files or SQL directly.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import trio

from panfs.server import oss
from panfs.server.faults import FaultRuleError, Faults
from panfs.server.http import Receive, Request, Scope, Send, drop, reply, reply_json
from panfs.server.oauth import OAuthApi
from panfs.server.options import ServerOptions
from panfs.server.state import API, OPS, ApiError, PayloadTooLarge, iso
from panfs.server.store import Store

log = logging.getLogger("panfs.server")


class DriveApp(OAuthApi):
    def __init__(
        self, store: Store, options: ServerOptions, admin_token: str, url: str, faults: Faults
    ) -> None:
        super().__init__(store, options, admin_token, url, faults)
        self.init_oauth()

    # -- ASGI ------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        try:
            await self.route(req, send)
        except PayloadTooLarge:
            self.stats.errors["PayloadTooLarge"] += 1
            await reply(send, 413, b"Payload Too Large", "text/plain")
        except ApiError as e:
            self.stats.errors[e.code] += 1
            await reply_json(send, e.status, self.err_body(e.code, e.message))

    async def route(self, req: Request, send: Send) -> None:
        path = req.path
        if path.startswith("/admin/"):
            await self.admin(req, send)
        elif path == "/oauth/access_token" and req.method == "POST":
            await self.pipeline("access_token", req, send, {"public": self.access_token})
        elif path == "/oauth/authorize/qrcode" and req.method == "POST":
            await self.pipeline("authorize_qrcode", req, send, {"public": self.authorize_qrcode})
        elif path.startswith("/oauth/qrcode/") and path.endswith("/status"):
            sid = path[len("/oauth/qrcode/") : -len("/status")]
            await self.pipeline(
                "qrcode_status", req, send, {"public": lambda _: self.qrcode_status(sid)}
            )
        elif path.startswith("/oauth/qrcode/") and req.method == "GET":  # the QR image's URL
            await req.body()
            await reply(send, 200, path.rsplit("/", 1)[-1].encode(), "text/plain")
        elif path == "/o/oauth/authorize" and req.method == "GET":  # the page the QR code opens
            await req.body()
            page = self.authorize_page(req.query.get("sid", ""))
            await reply(send, 200, page.encode(), "text/html; charset=utf-8")
        elif path == "/proxy/oauth/access_token" and req.method == "POST":
            await self.pipeline("proxy_token", req, send, {"public": self.proxy_access_token})
        elif path == "/proxy/oauth/authorize/qrcode" and req.method == "POST":
            await self.pipeline("proxy_qrcode", req, send, {"public": self.proxy_qrcode})
        elif path == "/proxy/token" and req.method == "GET":
            await req.body()
            self.stats.requests["proxy_token"] += 1
            status, answer = self.proxy_token_query(req.query)
            await reply_json(send, status, answer)
        elif path.startswith(API) and req.method == "POST":
            name = path[len(API) :]
            if name not in OPS:
                await reply_json(
                    send,
                    404,
                    {
                        "timestamp": iso(time.time()),
                        "status": 404,
                        "error": "Not Found",
                        "path": path,
                    },
                )
                return
            await self.pipeline(name.rsplit("/", 1)[-1], req, send, {"name": name})
        elif path.startswith("/oss/") and req.method == "PUT":
            await oss.put_part(self, req, send)
        elif path.startswith("/dl/") and req.method in ("GET", "HEAD"):
            await oss.download(self, req, send)
        else:
            await reply_json(
                send,
                404,
                {"timestamp": iso(time.time()), "status": 404, "error": "Not Found", "path": path},
            )

    async def pipeline(self, op: str, req: Request, send: Send, ctx: dict[str, Any]) -> None:
        self.stats.requests[op] += 1
        try:
            body = await req.json()
        except ValueError:
            raise ApiError(400, "InvalidParameter", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidParameter", "The request body must be a JSON object.")
        # an admin's read (the tests' assertions) spends no one's rate budget
        admin = secrets.compare_digest(req.headers.get("x-panfs-admin", ""), self.admin_token)
        wait = 0.0 if admin else self.buckets.take(op)
        if wait > 0:
            self.stats.errors["TooManyRequests"] += 1
            self.stats.throttled(op)
            ms = max(1, int(wait * 1000))
            await reply_json(
                send,
                429,
                self.err_body("TooManyRequests", f"请求过快，请等待 {ms} 毫秒后再请求"),
                {"x-retry-after": str(ms)},
            )
            return
        fields = dict(body)
        if op == "getUploadUrl":
            first = (body.get("part_info_list") or [{}])[0]
            fields["part_number"] = first.get("part_number") if isinstance(first, dict) else None
        rule = self.faults.pick(op, fields)
        if rule is not None and await self.apply_fault(rule, send, req, op):
            return
        if rule is not None and rule.action == "expire_session":
            self.expire_session(str(body.get("upload_id") or ""))
        if "public" in ctx:  # the OAuth endpoints: no Bearer token
            result = ctx["public"](body)
        else:
            self.authenticate(req)
            result = await getattr(self, "op_" + ctx["name"].replace("/", "_"))(body, req)
        if rule is not None and rule.action == "drop_after_store":
            await drop(send)  # done, but the answer is lost on the way back
            return
        if rule is not None and rule.action == "answer_after":
            await trio.sleep(float(rule.params.get("ms", 0)) / 1000)  # done; answered late
        await reply_json(send, 200, result)

    # -- auth ------------------------------------------------------------------
    def authenticate(self, req: Request) -> None:
        token = req.bearer
        payload = self.signer.check(token, "access") if token else None
        if payload is None:
            raise ApiError(401, "AccessTokenInvalid", "AccessToken is invalid. token is malformed")
        if payload["exp"] < time.time():
            raise ApiError(401, "AccessTokenExpired", "token expired")
        self.current_token = token

    # -- admin -----------------------------------------------------------------
    async def admin(self, req: Request, send: Send) -> None:
        if not secrets.compare_digest(req.bearer, self.admin_token):
            await reply_json(send, 401, self.err_body("AccessTokenInvalid", "admin token needed"))
            return
        p, m = req.path, req.method
        if p == "/admin/stats" and m == "GET":
            await reply_json(send, 200, self.stats.as_json())
        elif p == "/admin/stats/reset" and m == "POST":
            await req.body()
            self.stats.reset()
            await reply_json(send, 200, {})
        elif p == "/admin/faults" and m == "POST":
            try:
                self.faults.replace(await req.json())
            except (FaultRuleError, ValueError) as e:
                await reply_json(send, 400, self.err_body("InvalidParameter", str(e)))
                return
            await reply_json(send, 200, {"rules": len(self.faults.rules)})
        elif p == "/admin/faults" and m == "GET":
            await reply_json(
                send,
                200,
                [{"op": r.op, "action": r.action, "fired": r.fired} for r in self.faults.rules],
            )
        elif p == "/admin/tokens" and m == "POST":
            await req.body()
            await reply_json(send, 200, {"refresh_token": self.new_refresh_token()})
        elif p == "/admin/qrcode" and m == "GET":
            await reply_json(send, 200, self.pending_logins())
        elif p.startswith("/admin/qrcode/") and m == "POST":
            await req.body()
            sid, _, action = p[len("/admin/qrcode/") :].partition("/")
            await reply_json(send, 200, self.admin_login(sid, action))
        else:
            await reply_json(send, 404, self.err_body("NotFound", f"no admin route {m} {p}"))
