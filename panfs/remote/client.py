"""Open API client over ``httpx.AsyncClient`` under trio.

Owns: every HTTP request panfs makes to the drive (API host, upload host,
download host); auth with single-flight token refresh; turning every response
into a typed value or a classified ``RemoteError``; bounded retry of API calls.
Must not: know about files, journals, FUSE, or decide upload policy (the upload
session does); retry part PUTs (their recovery needs the session's reconciliation).

The calls the rest of panfs relies on are the ``Drive`` protocol (``remote/drive.py``).

Every API call goes through ``retry.Retry`` (one loop, one back-off) and the
client's ``Pacer`` (the official per-endpoint limits, ``remote.rate_limits``): a
429 holds its endpoint for ``x-retry-after`` and the call waits, however long;
5xx, gateway text/HTML and network errors are retried with jittered back-off up
to ``settings.api_attempts`` times, then the last ``TransientError`` escapes
(callers that must go on forever, the uploader, record it and try again later).
401 AccessTokenExpired/Invalid -> refresh once and retry once. Refresh is single
flight in the process and, through ``TokenFile``'s lock, across processes.

Namespace calls converge when an answer is lost: a folder create that finds its
name taken after an attempt may have landed is ours; a rename or move is checked
against the file itself (``openFile/get``) before it is repeated or reported.
``move`` never sends ``new_name`` (some readings use it only on a name clash):
a move plus a rename is two calls. ``put_part`` never retries.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import time
import urllib.request
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import trio

from panfs import crashpoint
from panfs.errors import (
    AuthError,
    CompleteRejected,
    CreateMaybeApplied,
    NetworkError,
    NoDownloadUrl,
    PermanentError,
    RemoteError,
    RemoteExistsError,
    RemoteNotFoundError,
    TransientError,
)
from panfs.remote.bodies import BodyFetcher
from panfs.remote.models import (
    CreateResult,
    DownloadUrl,
    DriveInfo,
    Into,
    RapidProof,
    RemoteFile,
    SpaceInfo,
    UploadedPart,
    UploadUrl,
)
from panfs.remote.responses import (
    AccessTokenError,
    classify,
    classify_download,
    classify_oss,
    range_headers,
    wrong_range,
)
from panfs.remote.retry import Pacer, Retry, normalize_limits
from panfs.remote.settings import RemoteSettings
from panfs.remote.tokens import TokenFile, TokenState
from panfs.remote.urls import url_expiry

log = logging.getLogger(__name__)

MOVE_PREFIX = ".panfs-move-"  # + file id: the temporary name of a move past a clash

API = "/adrive/v1.0/"
REFRESH_AT = 0.8  # refresh proactively at 80 % of the access token's lifetime
DOWNLOAD_URL_LIFE = 14400  # expire_sec asked of getDownloadUrl (the longest the service gives)
NO_URL_MEMORY = 60.0  # seconds a file without a download URL is not asked again
# complete's checks: a part too small, parts not adding up to the size, a content hash
COMPLETE_CHECKS = (
    "InvalidResource.PartList",
    "InvalidParameter.Size",
    "InvalidParameter.ContentHash",
)
# an answer to these may have been lost: the attempt may have been applied
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _json_object(resp: httpx.Response) -> dict[str, Any] | None:
    """The answer as a JSON object, or None (never raises on a body that is not JSON)."""
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class OpenApiClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: RemoteSettings,
        tokens: TokenFile,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        bodies: BodyFetcher | None = None,
    ) -> None:
        self.http = http
        self.bodies = bodies  # download bodies read in worker threads (else through httpx)
        self.settings = settings
        self.tokens = tokens
        self.sleep = sleep
        self.drive_id = ""
        self.pacer = Pacer(normalize_limits(settings.rate_limits), sleep=sleep)
        self.retry = Retry(self.pacer, settings.api_attempts, settings.max_backoff, sleep)
        self._lock = trio.Lock()
        state = tokens.load()
        if state is None or state.seed != settings.refresh_token:
            state = TokenState(seed=settings.refresh_token, refresh_token=settings.refresh_token)
        self._state = state
        # folder creates whose answer was lost: finding the name taken later means "ours"
        self._lost_creates: set[tuple[str, str]] = set()
        self._no_url: dict[str, float] = {}

    # -- auth ------------------------------------------------------------------------
    async def _token(self) -> str:
        s = self._state
        if s.access_token and time.time() < s.expires_at - (1 - REFRESH_AT) * s.lifetime:
            return s.access_token
        await self._refresh(stale=s.access_token)
        return self._state.access_token

    async def _refresh(self, stale: str) -> None:
        """Single flight in the process (``_lock``) and across processes (the token file's
        ``flock``): the holder re-reads the file and refreshes only if the access token it
        would replace is still the current one; otherwise it adopts the file's."""
        async with self._lock:
            if self._state.access_token != stale:
                return
            fd = await trio.to_thread.run_sync(self.tokens.lock)
            try:
                disk = self.tokens.load()
                interrupted: TokenState | None = None
                if disk is not None and disk.seed == self._state.seed:
                    if disk.refreshing_pid:
                        interrupted = disk  # its writer died between send and save
                    elif (
                        disk.access_token
                        and disk.access_token != stale
                        and time.time() < disk.expires_at - (1 - REFRESH_AT) * disk.lifetime
                    ):
                        self._state = disk  # another process refreshed: use its token
                        return
                    self._state = replace(disk, refreshing_pid=0, refreshing_since=0.0)
                await self._refresh_locked(interrupted)
            finally:
                self.tokens.unlock(fd)

    async def _refresh_locked(self, interrupted: TokenState | None) -> None:
        if interrupted is not None:
            log.warning(
                "a panfs process (pid %d) was killed while refreshing the access token; "
                "trying its refresh token again",
                interrupted.refreshing_pid,
            )
        body = {
            "client_id": self.settings.client_id,
            "grant_type": "refresh_token",
            "refresh_token": self._state.refresh_token,
        }
        if self.settings.client_secret:  # PKCE apps have none: the field is omitted
            body["client_secret"] = self.settings.client_secret
        # durable intent: a process killed from here until the answer is saved is
        # reported by the next start as exactly that
        await trio.to_thread.run_sync(
            self.tokens.save,
            replace(self._state, refreshing_pid=os.getpid(), refreshing_since=time.time()),
        )
        crashpoint.reach("refresh_in_flight")

        async def once() -> TokenState:
            try:
                if self.settings.token_style == "query":
                    params = {k: v for k, v in body.items() if v}
                    resp = await self.http.get(self.settings.token_url, params=params)
                else:
                    resp = await self.http.post(self.settings.token_url, json=body)
            except httpx.TransportError as e:
                raise NetworkError(f"token refresh: {type(e).__name__}: {e}") from None
            data = _json_object(resp) if resp.status_code == 200 else None
            if data is not None and data.get("access_token"):
                life = float(data.get("expires_in", 7200))
                return TokenState(
                    seed=self._state.seed,
                    refresh_token=str(data.get("refresh_token") or body["refresh_token"]),
                    access_token=str(data["access_token"]),
                    expires_at=time.time() + life,
                    lifetime=life,
                )
            err = classify(resp.status_code, resp.content, dict(resp.headers))
            if resp.status_code == 200:  # 200 without a token: a proxy's page, say
                raise TransientError(
                    "token refresh answered 200 without an access_token",
                    status=200,
                    body_start=err.body_start,
                )
            raise err

        try:
            new = await self._send_refresh(once)
        except PermanentError as err:
            key = _CLIENT_KEYS.get(err.code or "")
            if key is not None:  # the app's credentials, not the refresh token
                raise AuthError(
                    f"the token endpoint refused {key} ({err.code}: {err.message});"
                    f" fix {key} in the config (the refresh token was not used)",
                    status=err.status,
                    code=err.code,
                    body_start=err.body_start,
                ) from None
            if interrupted is not None:
                when = time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(interrupted.refreshing_since)
                )
                raise AuthError(
                    f"a panfs process (pid {interrupted.refreshing_pid}) was killed at {when} "
                    "while refreshing the access token, after the drive had spent its refresh "
                    f"token ({err.code or err.status}: {err.message}); run panfs login or put a "
                    "fresh remote.refresh_token in the config",
                    status=err.status,
                    code=err.code,
                    body_start=err.body_start,
                ) from None
            raise AuthError(
                f"the drive refused the refresh token ({err.code or err.status}: "
                f"{err.message}); run panfs login or put a fresh remote.refresh_token "
                "in the config",
                status=err.status,
                code=err.code,
                body_start=err.body_start,
            ) from None
        # durable before anything uses it: the old refresh token is spent now
        crashpoint.reach("after_token_answer")
        await trio.to_thread.run_sync(self.tokens.save, new)
        self._state = new

    async def _send_refresh(self, once: Callable[[], Awaitable[TokenState]]) -> TokenState:
        try:
            return await self.retry.run("access_token", once, paced=False)
        except BaseException:
            # alive to report it: the in-flight mark is for a process that dies in the window
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.tokens.save, self._state)
            raise

    # -- the API call loop -------------------------------------------------------------
    async def call(
        self,
        op: str,
        body: dict[str, Any],
        prepare: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> Any:
        """POST an Open API call through the pacer and the retry loop."""
        data, _ = await self._call(op, body, prepare)
        return data

    async def _call(
        self,
        op: str,
        body: dict[str, Any],
        prepare: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        before_send: Callable[[], None] | None = None,
        send_once: bool = False,
    ) -> tuple[Any, bool]:
        """The answer, and whether an earlier attempt may have reached the drive and been
        applied (its answer lost: a network failure after sending, a 5xx, garbage).
        ``before_send`` runs with no await between it and the request going out. ``send_once``:
        an attempt that may have been applied is not sent again (``CreateMaybeApplied``)."""
        maybe_applied = False
        refreshed = False

        async def once() -> Any:
            nonlocal maybe_applied, refreshed
            while True:
                if send_once and maybe_applied:
                    raise CreateMaybeApplied(f"{op}: an earlier attempt may have been applied")
                token = await self._token()
                if prepare is not None:
                    await prepare(token, body)
                if before_send is not None:
                    before_send()
                try:
                    resp = await self.http.post(
                        self.settings.endpoint + API + op,
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.TransportError as e:
                    if not isinstance(e, _NOT_SENT):
                        maybe_applied = True
                    raise NetworkError(f"{op}: {type(e).__name__}: {e}") from None
                if 200 <= resp.status_code < 300:
                    if not resp.content.strip():
                        return {}
                    try:
                        return resp.json()
                    except ValueError:
                        maybe_applied = True
                        raise TransientError(
                            f"{op}: answer is not JSON",
                            status=resp.status_code,
                            body_start=resp.text[:200],
                        ) from None
                err = classify(resp.status_code, resp.content, dict(resp.headers))
                if isinstance(err, AccessTokenError):
                    if refreshed:
                        raise AuthError(
                            f"{op}: access token refused after a refresh: {err.message}",
                            status=err.status,
                            code=err.code,
                        )
                    refreshed = True
                    await self._refresh(stale=token)
                    await self.pacer.wait(op)
                    continue
                if resp.status_code >= 500:
                    maybe_applied = True
                raise err

        data = await self.retry.run(op, once)
        return data, maybe_applied

    async def start(self) -> None:
        disk = self.tokens.load()
        if disk is not None and disk.seed == self._state.seed and disk.refreshing_pid:
            # a process died with a refresh in flight: find out now whether it cost the token
            await self._refresh(stale=self._state.access_token)
        info = await self.drive_info()
        drive = info.drive_id(self.settings.drive)
        if not drive:
            raise PermanentError(
                f"the account has no {self.settings.drive} drive; "
                "set remote.drive to default, resource or backup"
            )
        self.drive_id = drive

    # -- user ---------------------------------------------------------------------------
    async def drive_info(self) -> DriveInfo:
        d = await self.call("user/getDriveInfo", {})
        return DriveInfo(
            str(d.get("user_id", "")),
            str(d["default_drive_id"]),
            d.get("resource_drive_id"),
            d.get("backup_drive_id"),
        )

    async def space_info(self) -> SpaceInfo:
        d = (await self.call("user/getSpaceInfo", {}))["personal_space_info"]
        return SpaceInfo(int(d["used_size"]), int(d["total_size"]))

    # -- metadata ---------------------------------------------------------------------
    async def list_folder(self, parent_file_id: str) -> list[RemoteFile]:
        items: list[RemoteFile] = []
        marker = ""
        while True:
            d = await self.call(
                "openFile/list",
                {
                    "drive_id": self.drive_id,
                    "limit": 100,
                    "parent_file_id": parent_file_id,
                    "marker": marker,
                },
            )
            items += [RemoteFile.from_json(i) for i in d.get("items", [])]
            marker = str(d.get("next_marker") or "")
            if not marker:
                return items

    async def get_file(self, file_id: str) -> RemoteFile:
        d = await self.call("openFile/get", {"drive_id": self.drive_id, "file_id": file_id})
        return RemoteFile.from_json(d)

    async def get_by_path(self, path: str) -> RemoteFile:
        d = await self.call("openFile/get_by_path", {"drive_id": self.drive_id, "file_path": path})
        return RemoteFile.from_json(d)

    # -- create / upload session ---------------------------------------------------------
    @staticmethod
    def _create_result(d: dict[str, Any]) -> CreateResult:
        urls = tuple(
            UploadUrl(int(p["part_number"]), str(p["upload_url"]), url_expiry(str(p["upload_url"])))
            for p in d.get("part_info_list") or []
            if p.get("upload_url")
        )
        return CreateResult(
            file_id=str(d["file_id"]),
            file_name=str(d.get("file_name") or ""),
            parent_file_id=str(d.get("parent_file_id") or ""),
            type=str(d.get("type") or ""),
            upload_id=str(d.get("upload_id") or ""),
            rapid_upload=bool(d.get("rapid_upload")),
            exist=bool(d.get("exist")),
            part_urls=urls,
        )

    async def create_folder(
        self, parent_file_id: str, name: str, check_name_mode: str = "refuse"
    ) -> CreateResult:
        """Create a folder. When an earlier attempt (of this call, or of one whose answer
        was lost) may have created it, a folder found under the name is that one."""
        key = (parent_file_id, name)
        body = {
            "drive_id": self.drive_id,
            "parent_file_id": parent_file_id,
            "name": name,
            "type": "folder",
            "check_name_mode": check_name_mode,
        }
        try:
            d, maybe_applied = await self._call("openFile/create", body)
        except TransientError:
            self._lost_creates.add(key)
            raise
        res = self._create_result(d)
        ours = maybe_applied or key in self._lost_creates
        self._lost_creates.discard(key)
        if res.exist and ours and res.type in ("folder", ""):
            log.info("create folder %s: an earlier attempt had made it", name)
            return replace(res, exist=False)
        return res

    async def create_file(
        self,
        parent_file_id: str,
        name: str,
        size: int,
        part_sizes: Sequence[int],
        check_name_mode: str = "ignore",
        pre_hash: str | None = None,
        rapid: RapidProof | None = None,
    ) -> CreateResult:
        body: dict[str, Any] = {
            "drive_id": self.drive_id,
            "parent_file_id": parent_file_id,
            "name": name,
            "type": "file",
            "check_name_mode": check_name_mode,
            "size": size,
            "part_info_list": [
                {"part_number": i, "part_size": s} for i, s in enumerate(part_sizes, 1)
            ],
        }
        prepare = None
        if rapid is not None:
            body.update(
                content_hash=rapid.content_hash.upper(),
                content_hash_name="sha1",
                proof_version="v1",
            )

            async def prepare(token: str, b: dict[str, Any]) -> None:
                b["proof_code"] = await proof_code(token, rapid)
        elif pre_hash is not None:
            body["pre_hash"] = pre_hash
        else:
            body["content_hash_name"] = "none"
        if rapid is None:
            return self._create_result(await self.call("openFile/create", body, prepare))
        # a rapid create makes the file: never a second copy behind the caller's back
        data, _ = await self._call("openFile/create", body, prepare, send_once=True)
        return self._create_result(data)

    async def get_upload_urls(
        self, file_id: str, upload_id: str, part_numbers: Sequence[int]
    ) -> dict[int, UploadUrl]:
        d = await self.call(
            "openFile/getUploadUrl",
            {
                "drive_id": self.drive_id,
                "file_id": file_id,
                "upload_id": upload_id,
                "part_info_list": [{"part_number": n} for n in part_numbers],
            },
        )
        out = {}
        for p in d.get("part_info_list") or []:
            url = str(p.get("upload_url") or "")
            if url:
                out[int(p["part_number"])] = UploadUrl(int(p["part_number"]), url, url_expiry(url))
        return out

    async def list_uploaded_parts(self, file_id: str, upload_id: str) -> list[UploadedPart]:
        """Every page. ``part_size`` is None and ``etag`` "" where the drive leaves them out
        (the PDS reference marks both discontinued)."""
        parts: list[UploadedPart] = []
        marker = ""
        while True:
            body: dict[str, Any] = {
                "drive_id": self.drive_id,
                "file_id": file_id,
                "upload_id": upload_id,
            }
            if marker:
                body["part_number_marker"] = marker
            d = await self.call("openFile/listUploadedParts", body)
            for p in d.get("uploaded_parts") or []:
                size = p.get("part_size")
                parts.append(
                    UploadedPart(
                        int(p["part_number"]),
                        int(size) if size is not None else None,
                        str(p.get("etag") or "").strip('"').upper(),
                    )
                )
            marker = str(d.get("next_part_number_marker") or "")
            if not marker:
                return parts

    async def complete(
        self, file_id: str, upload_id: str, before_send: Callable[[], None] | None = None
    ) -> RemoteFile:
        """``before_send`` runs with no await between it and the request (a caller's last
        check). A failed check of the drive's raises ``CompleteRejected``; a gone session
        ``SessionGone``. ``content_hash`` may be "" (some readings leave it out)."""
        try:
            d, _ = await self._call(
                "openFile/complete",
                {"drive_id": self.drive_id, "file_id": file_id, "upload_id": upload_id},
                before_send=before_send,
            )
        except PermanentError as e:
            if e.code in COMPLETE_CHECKS:
                raise CompleteRejected(
                    e.message, status=e.status, code=e.code, body_start=e.body_start
                ) from None
            raise
        return RemoteFile.from_json(d)

    # -- changes -------------------------------------------------------------------------
    async def rename(
        self, file_id: str, new_name: str, check_name_mode: str = "refuse"
    ) -> RemoteFile:
        """``openFile/update`` (name); the resulting name is checked from the answer, and
        from the file itself when the answer says otherwise or the name is taken (an
        earlier attempt whose answer was lost may have renamed it already)."""
        body = {
            "drive_id": self.drive_id,
            "file_id": file_id,
            "name": new_name,
            "check_name_mode": check_name_mode,
        }
        try:
            d = await self.call("openFile/update", body)
        except RemoteExistsError:
            f = await self.get_file(file_id)
            if f.name == new_name:
                return f
            raise
        f = RemoteFile.from_json(d) if d.get("file_id") else await self.get_file(file_id)
        if f.name != new_name:
            f = await self.get_file(file_id)
            if f.name != new_name:
                raise RemoteExistsError(
                    f"rename to {new_name!r} did not take (the drive keeps {f.name!r})"
                )
        return f

    async def _move_only(self, file_id: str, to_parent_file_id: str) -> RemoteFile | None:
        """``openFile/move`` without ``new_name``; the file as it is after, or None when a
        same-named item at the target blocked it."""
        d = await self.call(
            "openFile/move",
            {
                "drive_id": self.drive_id,
                "file_id": file_id,
                "to_parent_file_id": to_parent_file_id,
                "check_name_mode": "refuse",
            },
        )
        f = await self.get_file(file_id)  # the answer carries no name: check the file
        if f.parent_file_id == to_parent_file_id:
            return f
        if d.get("exist"):
            return None
        raise PermanentError(f"move of {file_id} to {to_parent_file_id} did not take")

    async def move(
        self,
        file_id: str,
        to_parent_file_id: str,
        new_name: str | None = None,
        on_step: Callable[[str, str], None] | None = None,
        check_name_mode: str = "refuse",
    ) -> None:
        """Move, then rename when ``new_name`` differs: two calls, since the drive's
        ``new_name`` may apply only on a name clash. When the file's current name is taken
        at the target it first takes a temporary name. ``on_step(parent, name)`` is called
        after each step that landed (a caller journals where the file is);
        ``check_name_mode`` applies to the final rename."""
        f = await self._move_only(file_id, to_parent_file_id)
        if f is None:
            if new_name is None:
                raise RemoteExistsError(f"move: a same-named item exists in {to_parent_file_id}")
            tmp = MOVE_PREFIX + file_id
            f = await self.rename(file_id, tmp)
            if on_step is not None:
                on_step(f.parent_file_id, tmp)
            f = await self._move_only(file_id, to_parent_file_id)
            if f is None:
                raise RemoteExistsError(f"move: a same-named item exists in {to_parent_file_id}")
        if on_step is not None:
            on_step(to_parent_file_id, f.name)
        if new_name is not None and f.name != new_name:
            crashpoint.reach("between_move_and_rename")
            await self.rename(file_id, new_name, check_name_mode)
            if on_step is not None:
                on_step(to_parent_file_id, new_name)

    async def trash(self, file_id: str) -> None:
        """Already gone, or already in the recycle bin (some readings answer that with
        ``ForbiddenFileInTheRecycleBin``, not 404), counts as success."""
        try:
            await self.call(
                "openFile/recyclebin/trash", {"drive_id": self.drive_id, "file_id": file_id}
            )
        except RemoteNotFoundError:
            pass
        except PermanentError as e:
            if e.code != "ForbiddenFileInTheRecycleBin":
                raise

    # -- bytes ---------------------------------------------------------------------------
    async def get_download_url(self, file_id: str) -> DownloadUrl:
        """A URL for ranged GETs, asked for ``expire_sec`` 14400. A file the drive gives no
        usable URL for raises ``NoDownloadUrl`` (EIO), logged once, not asked again for a
        minute; the string "None" is never fetched."""
        failed = self._no_url.get(file_id)
        if failed is not None and time.monotonic() - failed < NO_URL_MEMORY:
            raise NoDownloadUrl(f"file {file_id}: the drive gives no download URL for it")
        body = {"drive_id": self.drive_id, "file_id": file_id, "expire_sec": DOWNLOAD_URL_LIFE}
        d = await self.call("openFile/getDownloadUrl", body)
        url = d.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            first = file_id not in self._no_url
            self._no_url[file_id] = time.monotonic()
            name = str(d.get("file_name") or d.get("name") or "")
            if first and not name:
                with contextlib.suppress(RemoteError):
                    name = (await self.get_file(file_id)).name
            err = NoDownloadUrl(
                f"{name or 'file'} ({file_id}): the drive gives no download URL for it "
                f"(url {url!r}); it cannot be read"
            )
            if first:
                log.warning("%s", err)
            raise err
        self._no_url.pop(file_id, None)
        return DownloadUrl(url, url_expiry(url), int(d.get("size") or 0))

    async def download_range(self, url: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of a download URL; transient failures are retried."""
        buf = bytearray(max(0, end - start))
        del buf[await self.download_into(url, start, buf) :]
        return bytes(buf)

    async def download_into(self, url: str, start: int, buf: Into) -> int:
        """Fill ``buf`` with the bytes of a download URL from ``start`` on, streamed into it
        (no list of pieces joined, no response body held); returns how many came (fewer
        only if the file ended early). Transient failures are retried; an expired URL
        raises ``UrlExpiredError`` at once (the caller asks for a fresh one). The body is
        read in a worker thread (``bodies``; httpx where an environment proxy is set)."""
        bodies = self.bodies

        async def once() -> int:
            if bodies is not None:
                return await bodies.get_into(url, start, buf)
            headers = range_headers(start, start + len(buf))
            try:
                async with self.http.stream("GET", url, headers=headers) as resp:
                    if resp.status_code not in (200, 206):
                        body = await resp.aread()
                        raise classify_download(resp.status_code, body, dict(resp.headers))
                    if (wrong := wrong_range(resp.status_code, resp.headers, start)) is not None:
                        raise NetworkError(f"download: {wrong}")
                    skip = start if resp.status_code == 200 else 0  # the whole file came
                    return await _fill(buf, resp.aiter_raw(), skip)
            except httpx.TransportError as e:
                raise NetworkError(f"download: {type(e).__name__}: {e}") from None

        if not buf:
            return 0
        return await self.retry.run("download", once, paced=False)

    async def put_part(self, url: str, body: bytes | AsyncIterable[bytes], length: int) -> str:
        """PUT one part; never retries. Returns the server's ETag (quotes stripped, upper
        case); it is an MD5 only where a session has seen it be one."""
        try:
            resp = await self.http.put(url, content=body, headers={"Content-Length": str(length)})
        except httpx.TransportError as e:
            raise NetworkError(f"part upload: {type(e).__name__}: {e}") from None
        if resp.status_code == 200:
            etag: str = resp.headers.get("etag", "")
            return etag.strip('"').upper()
        raise classify_oss(resp.status_code, resp.content, dict(resp.headers))


async def proof_code(token: str, rapid: RapidProof) -> str:
    """§5.3: base64 of 8 bytes at md5(token)[:16] mod size."""
    if rapid.size == 0:
        return ""
    start = int(hashlib.md5(token.encode()).hexdigest()[:16], 16) % rapid.size
    data = await rapid.read_at(start, min(8, rapid.size - start))
    return base64.b64encode(data).decode()


async def _fill(buf: Into, pieces: AsyncIterator[bytes], skip: int) -> int:
    """Copy a body into ``buf`` (after ``skip`` bytes). The body is read to its end (a
    ranged answer ends with the range; leaving httpx's nested body iterators half-read
    would leave them to the garbage collector)."""
    n = 0
    async for piece in pieces:
        if skip:
            cut = min(skip, len(piece))
            piece, skip = piece[cut:], skip - cut
        take = min(len(piece), len(buf) - n)
        if take:
            buf[n : n + take] = piece[:take] if take < len(piece) else piece
            n += take
    return n


# token endpoint codes that blame the app's credentials, not the refresh token (protocol §1.1)
_CLIENT_KEYS = {
    "InvalidClientId": "remote.client_id",
    "AppNotExists": "remote.client_id",
    "InvalidClientSecret": "remote.client_secret",
}


def _env_proxy() -> bool:
    proxies = urllib.request.getproxies()
    return any(proxies.get(k) for k in ("http", "https", "all"))


@asynccontextmanager
async def open_client(settings: RemoteSettings, state_dir: Path) -> AsyncIterator[OpenApiClient]:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.read_timeout,
    )
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=50)
    tls = httpx.create_ssl_context()  # one context: download bodies are verified the same way
    async with httpx.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, verify=tls
    ) as http:
        # an environment proxy (which httpx honours) is not one the threads' plain
        # connections could follow: then httpx takes the downloads too
        bodies = None if _env_proxy() else BodyFetcher(
            tls, settings.connect_timeout, settings.read_timeout, http.headers["user-agent"]
        )  # fmt: skip
        try:
            client = OpenApiClient(http, settings, TokenFile(state_dir), bodies=bodies)
            await client.start()
            yield client
        finally:
            if bodies is not None:
                bodies.close()
