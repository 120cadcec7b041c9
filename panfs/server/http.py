"""ASGI plumbing for the drive server: requests, replies, and deliberate connection drops.

Owns: reading a JSON body, sending JSON / XML / text replies, and the "drop the
connection without answering" trick (start a response that promises a body, then
end the app: hypercorn closes the connection and the client sees a cut
response, never a status it could act on). Must not: route or know the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Request:
    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        raw = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
        self.query = {k: v[0] for k, v in raw.items()}
        self.query_string: str = scope.get("query_string", b"").decode()
        self.consumed = False  # the body was read already

    async def rest(self) -> int:
        """Discard what is left of the body; returns the bytes read."""
        if self.consumed:
            return 0
        self.consumed = True
        return await drain(self.receive)

    @property
    def bearer(self) -> str:
        auth = self.headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else ""

    async def body(self, limit: int = 1 << 20) -> bytes:
        self.consumed = True
        chunks: list[bytes] = []
        total = 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                break
            data = msg.get("body", b"")
            total += len(data)
            if total <= limit:
                chunks.append(data)
            if not msg.get("more_body"):
                break
        return b"".join(chunks)

    async def json(self) -> Any:
        raw = await self.body()
        if not raw.strip():
            return {}
        return json.loads(raw)


async def reply(
    send: Send,
    status: int,
    body: bytes = b"",
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    hdrs = [(b"content-length", str(len(body)).encode())]
    if content_type:
        hdrs.append((b"content-type", content_type.encode()))
    for k, v in (headers or {}).items():
        hdrs.append((k.lower().encode(), v.encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def reply_json(
    send: Send, status: int, data: Any, headers: dict[str, str] | None = None
) -> None:
    await reply(send, status, json.dumps(data).encode(), "application/json", headers)


async def drop(send: Send) -> None:
    """End the exchange with no usable answer: the client sees a cut connection."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"1048576"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    # returning now makes hypercorn close the connection mid-body


async def drain(receive: Receive) -> int:
    """Read and discard the rest of a request body; returns the bytes read."""
    n = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return n
        n += len(msg.get("body", b""))
        if not msg.get("more_body"):
            return n
