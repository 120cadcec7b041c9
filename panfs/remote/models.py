"""Typed values the Open API returns, parsed from JSON in one place.

Owns: dataclasses for files, create results, upload URLs, uploaded parts, space
info, and their ``from_json`` constructors. Must not: do I/O or retry anything.
"""

from __future__ import annotations

import mmap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# a buffer a download is read into: page-aligned (an anonymous mapping) for the read path
Into = bytearray | mmap.mmap

CLOCK_SKEW = 600.0  # seconds the drive's clock may be behind ours


def _int(d: dict[str, Any], key: str, default: int = 0) -> int:
    v = d.get(key)
    return int(v) if v is not None else default


@dataclass(frozen=True)
class RemoteFile:
    file_id: str
    parent_file_id: str
    name: str
    type: str  # "file" | "folder"
    size: int
    content_hash: str  # upper-case hex SHA-1, "" for folders
    created_at: str
    updated_at: str
    drive_id: str = ""

    @property
    def is_dir(self) -> bool:
        return self.type == "folder"

    def made_since(self, since: float) -> bool:
        """Was it created at or after ``since`` (our clock; the drive's may be behind by
        ``CLOCK_SKEW``)? Unknown: yes."""
        try:
            made = datetime.fromisoformat(self.created_at).timestamp()
        except ValueError:
            return True
        return made >= since - CLOCK_SKEW

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RemoteFile:
        return cls(
            file_id=str(d["file_id"]),
            parent_file_id=str(d.get("parent_file_id", "")),
            name=str(d.get("name") or d.get("file_name") or ""),
            type=str(d.get("type", "file")),
            size=_int(d, "size"),
            content_hash=str(d.get("content_hash") or "").upper(),
            created_at=str(d.get("created_at", "")),
            updated_at=str(d.get("updated_at", "")),
            drive_id=str(d.get("drive_id", "")),
        )


@dataclass(frozen=True)
class UploadUrl:
    part_number: int
    url: str
    expires_at: float  # unix seconds, parsed from the URL (x-oss-expires / Expires / OSS4)


@dataclass(frozen=True)
class CreateResult:
    file_id: str
    file_name: str
    parent_file_id: str
    type: str
    upload_id: str  # "" for folders, rapid uploads and refuse+exist
    rapid_upload: bool
    exist: bool
    part_urls: tuple[UploadUrl, ...]


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    part_size: int | None  # None where the drive leaves it out
    etag: str  # quotes stripped, upper case; "" where the drive leaves it out


@dataclass(frozen=True)
class DriveInfo:
    user_id: str
    default_drive_id: str
    resource_drive_id: str | None
    backup_drive_id: str | None

    def drive_id(self, which: str) -> str | None:
        return {
            "default": self.default_drive_id,
            "resource": self.resource_drive_id,
            "backup": self.backup_drive_id,
        }[which]


@dataclass(frozen=True)
class SpaceInfo:
    used_size: int
    total_size: int


@dataclass(frozen=True)
class DownloadUrl:
    url: str
    expires_at: float  # unix seconds
    size: int


@dataclass(frozen=True)
class RapidProof:
    """What rapid upload needs: the whole-file SHA-1 and a way to read 8 bytes anywhere."""

    content_hash: str
    size: int
    read_at: Callable[[int, int], Awaitable[bytes]]
