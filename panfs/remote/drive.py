"""The ``Drive`` seam: what the uploader and the read path need of a drive.

Owns: the protocol (namespace calls, the upload sub-protocol, bytes) that
``OpenApiClient`` implements, and the errors it promises instead of service codes:
``SessionGone`` (the upload session is gone, from any call), ``PartConflict``
(re-list and realign), ``CompleteRejected`` (complete failed a check),
``NoDownloadUrl``, ``RemoteExistsError``, ``RemoteNotFoundError``, and
``TransientError`` for whatever may succeed later (every 429 and 5xx, whatever its
body). Must not: hold an implementation; a fake drive for fast tests implements it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from typing import Protocol

from panfs.remote.models import (
    CreateResult,
    DownloadUrl,
    Into,
    RapidProof,
    RemoteFile,
    SpaceInfo,
    UploadedPart,
    UploadUrl,
)

# the service's limit on parts per upload (protocol §4.11)
MAX_PARTS = 10000


class Drive(Protocol):
    drive_id: str

    # -- namespace ------------------------------------------------------------------------
    async def space_info(self) -> SpaceInfo: ...
    async def list_folder(self, parent_file_id: str) -> list[RemoteFile]: ...
    async def get_file(self, file_id: str) -> RemoteFile: ...
    async def get_by_path(self, path: str) -> RemoteFile: ...
    async def create_folder(
        self, parent_file_id: str, name: str, check_name_mode: str = "refuse"
    ) -> CreateResult: ...
    async def rename(
        self, file_id: str, new_name: str, check_name_mode: str = "refuse"
    ) -> RemoteFile: ...
    async def move(
        self,
        file_id: str,
        to_parent_file_id: str,
        new_name: str | None = None,
        on_step: Callable[[str, str], None] | None = None,
        check_name_mode: str = "refuse",
    ) -> None: ...
    async def trash(self, file_id: str) -> None: ...

    # -- upload ---------------------------------------------------------------------------
    async def create_file(
        self,
        parent_file_id: str,
        name: str,
        size: int,
        part_sizes: Sequence[int],
        check_name_mode: str = "ignore",
        pre_hash: str | None = None,
        rapid: RapidProof | None = None,
    ) -> CreateResult: ...
    async def get_upload_urls(
        self, file_id: str, upload_id: str, part_numbers: Sequence[int]
    ) -> dict[int, UploadUrl]: ...
    async def list_uploaded_parts(self, file_id: str, upload_id: str) -> list[UploadedPart]: ...
    async def put_part(self, url: str, body: bytes | AsyncIterable[bytes], length: int) -> str: ...
    async def complete(
        self, file_id: str, upload_id: str, before_send: Callable[[], None] | None = None
    ) -> RemoteFile: ...

    # -- bytes ----------------------------------------------------------------------------
    async def get_download_url(self, file_id: str) -> DownloadUrl: ...
    async def download_range(self, url: str, start: int, end: int) -> bytes: ...
    async def download_into(self, url: str, start: int, buf: Into) -> int: ...
