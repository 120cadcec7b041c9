"""Open API client over ``httpx.AsyncClient`` under trio.

Owns: every HTTP request panfs makes to the drive (API host, upload host,
download host); auth with single-flight token refresh; turning every response
into a typed value or a classified ``RemoteError``; bounded retry of API calls.
Must not: know about files, journals, FUSE, or decide upload policy (the upload
session does); retry part PUTs (their recovery needs the session's reconciliation).

CONTRACT (implemented in this module; the uploader and the mount rely on it):

    async with open_client(settings, state_dir) as client:   # resolves drive_id
        client.drive_id: str
        await client.drive_info() -> DriveInfo
        await client.space_info() -> SpaceInfo
        await client.list_folder(parent_file_id) -> list[RemoteFile]      # every page
        await client.get_file(file_id) -> RemoteFile
        await client.get_by_path("/a/b") -> RemoteFile
        await client.create_folder(parent_file_id, name, check_name_mode="refuse") -> CreateResult
        await client.create_file(parent_file_id, name, size, part_sizes,
                                 check_name_mode="ignore", pre_hash=None, rapid=None)
                                 -> CreateResult          # PreHashMatched -> PreHashMatchedError
        await client.get_upload_urls(file_id, upload_id, part_numbers) -> dict[int, UploadUrl]
        await client.list_uploaded_parts(file_id, upload_id) -> list[UploadedPart]  # every page
        await client.complete(file_id, upload_id) -> RemoteFile
        await client.rename(file_id, new_name, check_name_mode="refuse") -> RemoteFile
        await client.move(file_id, to_parent_file_id, new_name=None) -> None
        await client.trash(file_id) -> None            # already gone counts as success
        await client.delete(file_id) -> None           # already gone counts as success
        await client.get_download_url(file_id) -> DownloadUrl
        await client.download_range(url, start, end_exclusive) -> bytes
        await client.put_part(url, body, length) -> str   # server ETag, upper hex, no quotes

API calls retry transient failures (429 after ``x-retry-after``; 5xx, gateway
text/HTML, network errors with jittered exponential back-off capped at
``settings.max_backoff``) up to ``settings.api_attempts`` times, then raise the
last ``TransientError``; callers that must go on forever (the uploader) catch it,
record it, and try again later. 401 AccessTokenExpired/Invalid -> refresh once
(single-flight) and retry once. ``put_part`` never retries.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from panfs import crashpoint
from panfs.errors import (
    AuthError,
    NetworkError,
    PermanentError,
    RemoteError,
    RemoteExistsError,
    RemoteNotFoundError,
    TransientError,
)
from panfs.remote.models import (
    CreateResult,
    DownloadUrl,
    DriveInfo,
    RemoteFile,
    SpaceInfo,
    UploadedPart,
    UploadUrl,
)
from panfs.remote.responses import (
    AccessTokenError,
    PreHashMatchedError,
    UrlExpiredError,
    classify,
    classify_oss,
)
from panfs.remote.settings import RemoteSettings
from panfs.remote.tokens import TokenFile, TokenState
from panfs.remote.urls import url_expiry

__all__ = ["OpenApiClient", "PreHashMatchedError", "RapidProof", "UrlExpiredError", "open_client"]

log = logging.getLogger(__name__)

API = "/adrive/v1.0/"
REFRESH_AT = 0.8  # refresh proactively at 80 % of the access token's lifetime


@dataclass(frozen=True)
class RapidProof:
    """What rapid upload needs: the whole-file SHA-1 and a way to read 8 bytes anywhere."""

    content_hash: str
    size: int
    read_at: Callable[[int, int], Awaitable[bytes]]


_RNG = random.Random()


def _json_object(resp: httpx.Response) -> dict[str, Any] | None:
    """The answer as a JSON object, or None (never raises on a body that is not JSON)."""
    try:
        data = resp.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def backoff(attempt: int, cap: float, rng: random.Random = _RNG) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, 0.5 * 2**attempt)]."""
    return rng.uniform(0, min(cap, 0.5 * 2**attempt))


class OpenApiClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: RemoteSettings,
        tokens: TokenFile,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self.http = http
        self.settings = settings
        self.tokens = tokens
        self.sleep = sleep
        self.drive_id = ""
        self._lock = trio.Lock()
        state = tokens.load()
        if state is None or state.seed != settings.refresh_token:
            state = TokenState(seed=settings.refresh_token, refresh_token=settings.refresh_token)
        self._state = state

    # -- auth ------------------------------------------------------------------------
    async def _token(self) -> str:
        s = self._state
        if s.access_token and time.time() < s.expires_at - (1 - REFRESH_AT) * s.lifetime:
            return s.access_token
        await self._refresh(stale=s.access_token)
        return self._state.access_token

    async def _refresh(self, stale: str) -> None:
        """Single-flight: whoever holds the lock refreshes; the others reuse its result."""
        async with self._lock:
            if self._state.access_token != stale:
                return
            body = {
                "client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret,
                "grant_type": "refresh_token",
                "refresh_token": self._state.refresh_token,
            }
            for attempt in range(self.settings.api_attempts):
                try:
                    resp = await self.http.post(self.settings.token_url, json=body)
                except httpx.TransportError as e:
                    err: RemoteError = NetworkError(f"token refresh: {type(e).__name__}: {e}")
                else:
                    data = _json_object(resp) if resp.status_code == 200 else None
                    if data is not None and data.get("access_token"):
                        new = TokenState(
                            seed=self._state.seed,
                            refresh_token=str(data.get("refresh_token") or body["refresh_token"]),
                            access_token=str(data["access_token"]),
                            expires_at=time.time() + float(data.get("expires_in", 7200)),
                            lifetime=float(data.get("expires_in", 7200)),
                        )
                        # durable before anything uses it: the old refresh token is spent now
                        crashpoint.reach("after_token_answer")
                        await trio.to_thread.run_sync(self.tokens.save, new)
                        self._state = new
                        return
                    err = classify(resp.status_code, resp.content, dict(resp.headers))
                    if resp.status_code == 200:  # 200 without a token: a proxy's page, say
                        err = TransientError(
                            "token refresh answered 200 without an access_token",
                            status=200,
                            body_start=err.body_start,
                        )
                    if not err.transient:
                        key = _CLIENT_KEYS.get(err.code)
                        if key is not None:  # the app's credentials, not the refresh token
                            raise AuthError(
                                f"the token endpoint refused {key} ({err.code}: {err.message});"
                                f" fix {key} in the config (the refresh token was not used)",
                                status=err.status,
                                code=err.code,
                                body_start=err.body_start,
                            ) from None
                        raise AuthError(
                            f"the drive refused the refresh token ({err.code or err.status}: "
                            f"{err.message}); put a fresh remote.refresh_token in the config",
                            status=err.status,
                            code=err.code,
                            body_start=err.body_start,
                        ) from None
                await self.sleep(
                    getattr(err, "retry_after", 0) or backoff(attempt, self.settings.max_backoff)
                )
            raise err

    # -- the API call loop -------------------------------------------------------------
    async def call(
        self,
        op: str,
        body: dict[str, Any],
        prepare: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
    ) -> Any:
        """POST an Open API call; retries transient failures ``api_attempts`` times in all."""
        refreshed = False
        last: RemoteError | None = None
        for attempt in range(self.settings.api_attempts):
            token = await self._token()
            if prepare is not None:
                await prepare(token, body)
            try:
                resp = await self.http.post(
                    self.settings.endpoint + API + op,
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError as e:
                last = NetworkError(f"{op}: {type(e).__name__}: {e}")
            else:
                if 200 <= resp.status_code < 300:
                    if not resp.content.strip():
                        return {}
                    try:
                        return resp.json()
                    except ValueError:
                        last = TransientError(
                            f"{op}: answer is not JSON",
                            status=resp.status_code,
                            body_start=resp.text[:200],
                        )
                        continue
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
                    continue
                if not err.transient:
                    raise err
                last = err
            log.info("%s: %s; retrying", op, last.describe())
            wait = getattr(last, "retry_after", None)
            await self.sleep(
                wait if wait is not None else backoff(attempt, self.settings.max_backoff)
            )
        assert last is not None
        raise last

    async def start(self) -> None:
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
        d = await self.call(
            "openFile/create",
            {
                "drive_id": self.drive_id,
                "parent_file_id": parent_file_id,
                "name": name,
                "type": "folder",
                "check_name_mode": check_name_mode,
            },
        )
        return self._create_result(d)

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
        return self._create_result(await self.call("openFile/create", body, prepare))

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
            url = str(p["upload_url"])
            out[int(p["part_number"])] = UploadUrl(int(p["part_number"]), url, url_expiry(url))
        return out

    async def list_uploaded_parts(self, file_id: str, upload_id: str) -> list[UploadedPart]:
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
                parts.append(
                    UploadedPart(
                        int(p["part_number"]),
                        int(p["part_size"]),
                        str(p.get("etag", "")).strip('"').upper(),
                    )
                )
            marker = str(d.get("next_part_number_marker") or "")
            if not marker:
                return parts

    async def complete(self, file_id: str, upload_id: str) -> RemoteFile:
        d = await self.call(
            "openFile/complete",
            {"drive_id": self.drive_id, "file_id": file_id, "upload_id": upload_id},
        )
        return RemoteFile.from_json(d)

    # -- changes -------------------------------------------------------------------------
    async def rename(
        self, file_id: str, new_name: str, check_name_mode: str = "refuse"
    ) -> RemoteFile:
        d = await self.call(
            "openFile/update",
            {
                "drive_id": self.drive_id,
                "file_id": file_id,
                "name": new_name,
                "check_name_mode": check_name_mode,
            },
        )
        return RemoteFile.from_json(d)

    async def move(self, file_id: str, to_parent_file_id: str, new_name: str | None = None) -> None:
        body: dict[str, Any] = {
            "drive_id": self.drive_id,
            "file_id": file_id,
            "to_parent_file_id": to_parent_file_id,
            "check_name_mode": "refuse",
        }
        if new_name is not None:
            body["new_name"] = new_name
        d = await self.call("openFile/move", body)
        if d.get("exist"):
            raise RemoteExistsError(f"move: a same-named item exists in {to_parent_file_id}")

    async def trash(self, file_id: str) -> None:
        with contextlib.suppress(RemoteNotFoundError):  # already gone counts as success
            await self.call(
                "openFile/recyclebin/trash", {"drive_id": self.drive_id, "file_id": file_id}
            )

    async def delete(self, file_id: str) -> None:
        with contextlib.suppress(RemoteNotFoundError):  # already gone counts as success
            await self.call("openFile/delete", {"drive_id": self.drive_id, "file_id": file_id})

    # -- bytes ---------------------------------------------------------------------------
    async def get_download_url(self, file_id: str) -> DownloadUrl:
        d = await self.call(
            "openFile/getDownloadUrl", {"drive_id": self.drive_id, "file_id": file_id}
        )
        url = str(d["url"])
        return DownloadUrl(url, url_expiry(url), int(d.get("size") or 0))

    async def download_range(self, url: str, start: int, end: int) -> bytes:
        try:
            resp = await self.http.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        except httpx.TransportError as e:
            raise NetworkError(f"download: {type(e).__name__}: {e}") from None
        if resp.status_code in (200, 206):
            data = resp.content
            return data[start:end] if resp.status_code == 200 else data
        err = classify_oss(resp.status_code, resp.content, dict(resp.headers))
        if resp.status_code == 403 and "expired" in err.message.lower():
            raise UrlExpiredError(err.message, status=403, code=err.code, body_start=err.body_start)
        raise err

    async def put_part(self, url: str, body: bytes | AsyncIterable[bytes], length: int) -> str:
        """PUT one part; never retries. Returns the server's ETag (upper hex, no quotes)."""
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


# token endpoint codes that blame the app's credentials, not the refresh token (protocol §1.1)
_CLIENT_KEYS = {
    "InvalidClientId": "remote.client_id",
    "AppNotExists": "remote.client_id",
    "InvalidClientSecret": "remote.client_secret",
}


@asynccontextmanager
async def open_client(settings: RemoteSettings, state_dir: Path) -> AsyncIterator[OpenApiClient]:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.read_timeout,
    )
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=50)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as http:
        client = OpenApiClient(http, settings, TokenFile(state_dir))
        await client.start()
        yield client
