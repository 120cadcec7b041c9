"""Download bodies read in worker threads, straight into the caller's buffer.

Owns: one ranged GET of a download URL run in a worker thread (``trio.to_thread`` under
its own ``CapacityLimiter``) over a small pool of blocking HTTP/1.1 connections per
download host (``http.client``), the body read with ``readinto`` into the caller's
buffer (the socket's bytes land in it with no Python step per piece), cancellation (a
cancelled GET shuts its socket down, so its thread ends at once and never writes into
the buffer after the caller moved on), and turning every outcome into the same values
and errors as the httpx path: a network failure or a body cut short is a
``NetworkError`` (transient), as is a 206 for another range, and any other status goes
through ``responses.classify_download`` (an expired URL becomes ``UrlExpiredError``).
Why not httpx here: its body loop costs Python work per 64 KiB piece on the thread that
also serves FUSE requests (docs/performance.md: the figures). TLS uses the ssl context
the httpx client was given (the same verification), redirects are not followed
(as there); with an environment proxy set, no fetcher is made (``client.open_client``:
httpx takes every download then).
Must not: retry (the client's ``Retry`` does), ask for URLs, or carry anything but
download bodies (API calls and uploads stay on httpx).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio

from panfs.errors import NetworkError
from panfs.remote.models import Into
from panfs.remote.responses import classify_download, range_headers, wrong_range

THREADS = 6  # GETs whose bodies are read at once, over all files
IDLE_CONNS = THREADS  # kept-alive connections per download host: one per GET at once
IDLE_FOR = 20.0  # seconds a kept-alive connection may wait for its next GET
ERROR_BODY = 64 << 10  # the most of an error answer read (its start is all that is kept)
SKIP_PIECE = 1 << 20  # a 200 with the whole file: the bytes before the range, read in these

Host = tuple[str, str, int]  # scheme, host, port


@dataclass(eq=False)
class _Conn:
    http: http.client.HTTPConnection
    host: Host
    idle_since: float = 0.0
    used: bool = False  # it served a GET before: a failure to send may be a stale keep-alive


@dataclass(eq=False)
class _Get:
    """One GET in a worker thread. ``abort`` (from the trio thread) shuts its socket
    down, so the thread's next or current socket call returns at once."""

    conn: _Conn
    target: str
    headers: dict[str, str]
    start: int
    buf: Into
    connect: Callable[[_Conn], None]
    ended: trio.Event = field(default_factory=trio.Event)
    token: trio.lowlevel.TrioToken = field(default_factory=trio.lowlevel.current_trio_token)
    aborted: bool = False
    started: bool = False  # its thread began (under ``lock``, with ``aborted``)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reusable: bool = False  # the answer was read to its end: the connection may serve another
    status: int = 0
    n: int = 0
    error_body: bytes = b""
    error_headers: dict[str, str] = field(default_factory=dict)
    failure: str = ""  # a network failure, described
    sock: socket.socket | None = None  # the socket the request went out on

    def run(self) -> None:
        with self.lock:
            self.started = not self.aborted
        try:
            if not self.started:
                return  # abandoned before it began: ``buf`` is never touched
            self._run()
        except (OSError, http.client.HTTPException) as e:
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                self.token.run_sync_soon(self.ended.set)

    def _run(self) -> None:
        resp = self._send()
        self.status = resp.status
        if resp.status not in (200, 206):
            self.error_body = resp.read(ERROR_BODY)
            self.error_headers = {k.lower(): v for k, v in resp.getheaders()}
            self.reusable = resp.isclosed()
            return
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if (wrong := wrong_range(resp.status, headers, self.start)) is not None:
            raise http.client.HTTPException(wrong)
        if resp.status == 200 and self.start:  # the whole file came: skip to the range
            self._skip(resp, self.start)
        view = memoryview(self.buf)
        try:
            while self.n < len(self.buf) and not self.aborted:
                got = resp.readinto(view[self.n :])
                if not got:
                    break
                self.n += got
        finally:
            view.release()
        if self.aborted:
            raise OSError("GET abandoned")
        if resp.length:  # an announced body that ended before its length: cut short
            if self.n < len(self.buf):
                raise http.client.IncompleteRead(b"", resp.length)
            return  # more than asked for (a 200 past the range): not read, not reused
        self.reusable = resp.isclosed() and not resp.will_close

    def _send(self) -> http.client.HTTPResponse:
        """Send the GET; a kept-alive connection the server closed meanwhile is opened
        again once (a GET may be repeated: nothing was answered)."""
        for again in (False, True):
            if self.aborted:
                raise OSError("GET abandoned")
            try:
                if self.conn.http.sock is None:
                    self.connect(self.conn)
                    if self.aborted:  # it came while connecting (nothing to shut down then)
                        raise OSError("GET abandoned")
                self.conn.http.request("GET", self.target, headers=self.headers)
                # an answer that closes the connection takes its socket from ``conn``:
                # kept here so that ``abort`` can still shut it down
                self.sock = self.conn.http.sock
                return self.conn.http.getresponse()
            except (ConnectionError, http.client.BadStatusLine):
                if not self.conn.used or again:
                    raise
                self.conn.http.close()
                self.conn.used = False
        raise AssertionError("unreachable")

    def _skip(self, resp: http.client.HTTPResponse, n: int) -> None:
        scratch = bytearray(min(n, SKIP_PIECE))
        with memoryview(scratch) as view:
            while n and not self.aborted:
                got = resp.readinto(view[: min(n, len(scratch))])
                if not got:
                    raise http.client.IncompleteRead(b"", n)
                n -= got

    def abort(self) -> bool:
        """Stop the GET; whether its thread had begun (then it may still be at work)."""
        with self.lock:
            self.aborted = True
            if not self.started:
                return False
        sock = self.sock or self.conn.http.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return True


class BodyFetcher:
    """Ranged GETs of download URLs whose bodies are read in worker threads."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        connect_timeout: float,
        read_timeout: float,
        user_agent: str = "",
        threads: int = THREADS,
    ) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.user_agent = user_agent
        self.limiter = trio.CapacityLimiter(threads)
        self._idle: dict[Host, list[_Conn]] = {}
        self.closed = False
        self.gets = 0  # GETs sent
        self.running = 0  # GETs whose thread may still be at work

    async def get_into(self, url: str, start: int, buf: Into) -> int:
        """Fill ``buf`` with the URL's bytes from ``start`` on (one attempt); how many
        came: fewer than ``len(buf)`` only if the file ended early."""
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = range_headers(start, start + len(buf), self.user_agent)
        conn = self._take(_host(url))
        get = _Get(conn, target, headers, start, buf, self._connect)
        self.gets += 1
        self.running += 1
        try:
            await trio.to_thread.run_sync(get.run, abandon_on_cancel=True, limiter=self.limiter)
        except trio.Cancelled:
            if get.abort():
                # the thread ends at once now (its socket is shut); until it has, it may
                # still write into ``buf``, which the caller may reuse: wait for it (bounded
                # by the connect timeout, the one socket call a shutdown cannot cut short)
                with trio.CancelScope(shield=True):
                    await get.ended.wait()
            conn.http.close()
            raise
        finally:
            self.running -= 1
        if get.failure:
            conn.http.close()
            raise NetworkError(f"download: {get.failure}")
        conn.used = True
        self._put(conn, reusable=get.reusable)
        if get.status not in (200, 206):
            raise classify_download(get.status, get.error_body, get.error_headers)
        return get.n

    # -- connections ---------------------------------------------------------------
    def _take(self, host: Host) -> _Conn:
        idle = self._idle.get(host, [])
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_FOR:
                return conn
            conn.http.close()
        scheme, name, port = host
        if scheme == "https":
            h: http.client.HTTPConnection = http.client.HTTPSConnection(
                name, port, timeout=self.connect_timeout, context=self.ssl_context
            )
        else:
            h = http.client.HTTPConnection(name, port, timeout=self.connect_timeout)
        return _Conn(h, host)

    def _connect(self, conn: _Conn) -> None:
        """In the worker thread: connect under the connect timeout, then read under the
        read timeout."""
        conn.http.connect()
        assert conn.http.sock is not None
        conn.http.sock.settimeout(self.read_timeout)

    def _put(self, conn: _Conn, *, reusable: bool) -> None:
        idle = self._idle.setdefault(conn.host, [])
        if not reusable or self.closed or len(idle) >= IDLE_CONNS:
            conn.http.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.http.close()
        self._idle.clear()


def _host(url: str) -> Host:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()  # http or https: ``get_download_url`` checked it
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname or "", port
