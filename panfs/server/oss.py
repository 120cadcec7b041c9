"""The upload and download hosts: pre-signed part PUTs (strictly sequential) and ranged GETs.

Owns: signature and expiry checks, the sequential-part state
machine (N = last+1 stored; N ≤ last → 409 PartAlreadyExist with the stored ETag;
N > last+1 → 400 PartNotSequential), streaming part bodies to disk with MD5 and
SHA-1 on the way, part-level faults (lost response, cut body, truncated part),
and downloads with ``Range``. Must not: answer Open API calls.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import trio

from panfs.server.http import Request, Send, drop, reply
from panfs.server.oss_errors import STATUS, xml_error
from panfs.server.store import Part

if TYPE_CHECKING:
    from panfs.server.state import ServerState as DriveApp

CHUNK = 4 << 20


async def oss_error(
    app: DriveApp, send: Send, code: str, extra: dict[str, str] | None = None
) -> None:
    app.stats.errors[code] += 1
    await reply(send, STATUS[code], xml_error(code, extra), "application/xml")


def download_url(app: DriveApp, file_id: str, lifetime: float) -> tuple[str, float]:
    path = f"/dl/{file_id}"
    expires = time.time() + lifetime
    if app.opts.download_url_style == "OSS4":
        now = time.gmtime()
        params = {
            "x-oss-signature-version": "OSS4-HMAC-SHA256",
            "x-oss-date": time.strftime("%Y%m%dT%H%M%SZ", now),
            "x-oss-expires": str(int(lifetime)),
        }
    else:
        params = {"x-oss-expires": str(int(expires)), "x-oss-signature-version": "OSS2"}
    params["x-oss-signature"] = app.signer.sign_url(path, params)
    return f"{app.url}{path}?" + "&".join(f"{k}={v}" for k, v in params.items()), expires


def _expiry(q: dict[str, str]) -> float:
    if q.get("x-oss-signature-version", "").startswith("OSS4"):
        t = time.strptime(q.get("x-oss-date", "19700101T000000Z"), "%Y%m%dT%H%M%SZ")
        import calendar

        return calendar.timegm(t) + float(q.get("x-oss-expires", "0"))
    return float(q.get("x-oss-expires", "0"))


async def _check_url(app: DriveApp, req: Request, send: Send) -> bool:
    if not app.signer.verify_url(req.path, req.query) or req.headers.get("content-type"):
        await app.discard_body(req)
        await oss_error(
            app,
            send,
            "SignatureDoesNotMatch",
            {"StringToSign": req.method + "\\n\\n" + req.headers.get("content-type", "")},
        )
        return False
    exp = _expiry(req.query)
    if exp < time.time():
        await app.discard_body(req)
        await oss_error(
            app,
            send,
            "AccessDenied",
            {
                "Expires": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(exp)),
                "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            },
        )
        return False
    return True


async def put_part(app: DriveApp, req: Request, send: Send) -> None:
    app.stats.requests["put_part"] += 1
    if not await _check_url(app, req, send):
        return
    upload_id = req.query.get("uploadId", "")
    try:
        number = int(req.query.get("partNumber", ""))
    except ValueError:
        number = 0
    fields: dict[str, Any] = {"part_number": number, "upload_id": upload_id}
    rule = app.faults.pick("put_part", fields)
    if rule is not None and await app.apply_fault(rule, send, req, "put_part"):
        return
    if rule is not None and rule.action == "expire_session":
        app.expire_session(upload_id)
    app.part_puts += 1
    every = app.opts.oss_5xx_every
    if every > 0 and app.part_puts % every == 0:
        await _count_drain(app, req)  # the body went over the wire: it counts as received
        await oss_error(
            app, send, ("InternalError", "ServiceUnavailable")[app.part_puts // every % 2]
        )
        return
    if not 1 <= number <= 10000:
        await _count_drain(app, req)
        await oss_error(app, send, "InvalidArgument", {"PartNumber": str(number)})
        return
    sess = app.store.session(upload_id)
    if (
        sess is None
        or sess.state != "open"
        or (time.time() - sess.created_at > app.opts.session_lifetime)
    ):
        await _count_drain(app, req)
        await oss_error(app, send, "NoSuchUpload", {"UploadId": upload_id})
        return
    async with app.put_lock:
        last = app.store.last_part(upload_id)
        last_n = last.part_number if last else 0
        if number <= last_n:
            await _count_drain(app, req)
            stored = app.store.part(upload_id, number)
            await oss_error(
                app,
                send,
                "PartAlreadyExist",
                {
                    "PartNumber": str(number),
                    "ETag": f'"{stored.md5 if stored else ""}"',
                    "EC": "0042-00000108",
                },
            )
            return
        if number > last_n + 1:
            await _count_drain(app, req)
            await oss_error(
                app, send, "PartNotSequential", {"PartNumber": str(number), "EC": "0042-00000104"}
            )
            return
        offset = last.offset + last.size if last else 0
        await _store_part(app, req, send, upload_id, number, offset, rule)


async def _count_drain(app: DriveApp, req: Request) -> None:
    app.stats.part_bytes_received += await req.rest()


async def _store_part(
    app: DriveApp, req: Request, send: Send, upload_id: str, number: int, offset: int, rule: Any
) -> None:
    action = rule.action if rule is not None else None
    cut_after = int(rule.params.get("after_bytes", 0)) if action == "cut_body" else None
    keep = int(rule.params.get("keep_bytes", 0)) if action == "store_truncated" else None
    declared = req.headers.get("content-length")
    sha1 = await trio.to_thread.run_sync(app.store.running_sha1, upload_id, offset)
    md5 = hashlib.md5()
    path = app.store.data_path(upload_id)
    fd = os.open(path, os.O_WRONLY)
    written = 0  # bytes accepted for this part (queued to the writer)
    complete = False
    buf = bytearray()
    # one buffer is written and hashed while the next one arrives: a buffer of 1 is the pipeline
    to_disk, from_net = trio.open_memory_channel[tuple[bytes, int]](1)

    async def writer() -> None:
        async with from_net:
            async for data, pos in from_net:
                # the write, the MD5 and the SHA-1 of one buffer side by side (each releases
                # the GIL): a buffer costs the slowest of the three, not their sum
                async with trio.open_nursery() as each:
                    each.start_soon(trio.to_thread.run_sync, os.pwrite, fd, data, pos)
                    each.start_soon(trio.to_thread.run_sync, md5.update, data)
                    each.start_soon(trio.to_thread.run_sync, sha1.update, data)

    async def push() -> None:
        nonlocal written
        if buf:
            data = bytes(buf)
            buf.clear()
            await to_disk.send((data, offset + written))
            written += len(data)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            async with to_disk:
                while True:
                    msg = await req.receive()
                    if msg["type"] == "http.disconnect":
                        break
                    data = msg.get("body", b"")
                    app.stats.part_bytes_received += len(data)
                    if cut_after is not None and written + len(buf) + len(data) >= cut_after:
                        break  # the fault: stop reading and drop the connection
                    if keep is not None:
                        data = data[: max(0, keep - written - len(buf))]
                    buf += data
                    if len(buf) >= CHUNK:
                        await push()
                    if not msg.get("more_body"):
                        complete = True
                        break
                if complete:
                    await push()
        if complete and declared is not None and keep is None and written != int(declared):
            complete = False
        if not complete:
            os.ftruncate(fd, offset)  # a cut body is never a part
            await drop(send)
            return
        os.ftruncate(fd, offset + written)
        await trio.to_thread.run_sync(os.fsync, fd)
    finally:
        os.close(fd)
    # --etag opaque: a string of the MD5's shape that is not the MD5 (the harshest reading)
    etag = md5.hexdigest().upper() if app.opts.etag == "md5" else secrets.token_hex(16).upper()
    app.store.commit_part(upload_id, Part(number, offset, written, etag), sha1)
    app.stats.part_bytes_stored += written
    app.stats.parts_stored += 1
    app.maybe_expire_after_parts(upload_id, number)
    if action == "drop_after_store":
        await drop(send)
        return
    await reply(send, 200, b"", None, {"ETag": f'"{etag}"'})


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


async def download(app: DriveApp, req: Request, send: Send) -> None:
    app.stats.requests["download"] += 1
    if not await _check_url(app, req, send):
        return
    file_id = req.path.rsplit("/", 1)[-1]
    rule = app.faults.pick("download", {"file_id": file_id})
    if rule is not None and await app.apply_fault(rule, send, req):
        return
    f = app.store.get(file_id)
    if f is None or f.status != "available":
        await oss_error(app, send, "NoSuchUpload")
        return
    size = f.size
    start, end, status = 0, size, 200
    m = _RANGE.match(req.headers.get("range", ""))
    headers = {"accept-ranges": "bytes", "etag": f'"{f.content_hash}"'}
    if m and (m.group(1) or m.group(2)):
        if m.group(1):
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
        else:
            start, end = max(0, size - int(m.group(2))), size
        if start >= size and size > 0:
            await reply(send, 416, b"", None, {"content-range": f"bytes */{size}"})
            return
        status = 206
        headers["content-range"] = f"bytes {start}-{max(start, end - 1)}/{size}"
    length = max(0, end - start)
    hdrs = [
        (b"content-length", str(length).encode()),
        (b"content-type", b"application/octet-stream"),
    ]
    hdrs += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    if req.method == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    fd = os.open(app.store.blob(file_id), os.O_RDONLY)
    try:
        pos = start
        while pos < end:
            chunk = await trio.to_thread.run_sync(os.pread, fd, min(CHUNK, end - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            app.stats.download_bytes_sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
    finally:
        os.close(fd)
    if pos == start:
        await send({"type": "http.response.body", "body": b""})
