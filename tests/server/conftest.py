"""An Open API caller for conformance tests: raw httpx, no panfs client in between."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.drive import DriveServer


class Api:
    def __init__(self, server: DriveServer) -> None:
        self.server = server
        self.url = server.url
        acct = server.account
        self.client_id, self.client_secret = acct["client_id"], acct["client_secret"]
        self.refresh = server.mint_refresh_token()
        tok = self.token(self.refresh)
        assert tok.status_code == 200, tok.text
        self.access = tok.json()["access_token"]
        self.refresh = tok.json()["refresh_token"]
        self.drive_id = self.call("user/getDriveInfo", {}).json()["default_drive_id"]

    def token(self, refresh: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/oauth/access_token",
            json={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "refresh_token",
                "refresh_token": refresh,
            },
        )

    def call(self, op: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        b = dict(body)
        if op.startswith("openFile"):
            b.setdefault("drive_id", self.drive_id)
        return httpx.post(
            f"{self.url}/adrive/v1.0/{op}",
            json=b,
            headers={"Authorization": f"Bearer {token or self.access}"},
            timeout=60,
        )

    def ok(self, op: str, body: dict[str, Any]) -> Any:
        r = self.call(op, body)
        assert r.status_code == 200, r.text
        return r.json()

    def create(self, name: str, size: int, parts: int = 1, parent: str = "root", **kw: Any) -> Any:
        return self.ok(
            "openFile/create",
            {
                "parent_file_id": parent,
                "name": name,
                "type": "file",
                "size": size,
                "part_info_list": [{"part_number": i} for i in range(1, parts + 1)],
                **kw,
            },
        )

    def upload(self, name: str, chunks: list[bytes], parent: str = "root") -> Any:
        c = self.create(name, sum(map(len, chunks)), len(chunks), parent)
        for info, data in zip(c["part_info_list"], chunks, strict=True):
            r = httpx.put(info["upload_url"], content=data)
            assert r.status_code == 200, r.text
        return self.ok("openFile/complete", {"file_id": c["file_id"], "upload_id": c["upload_id"]})


@pytest.fixture
def api(drive: DriveServer) -> Api:
    return Api(drive)


@pytest.fixture
def drive_with(tmp_path: Path) -> Iterator[Any]:
    """Start a server with extra options: ``drive_with("--max-file-size", "1MiB")``."""
    servers: list[DriveServer] = []

    def start(*options: str) -> DriveServer:
        s = DriveServer(tmp_path / f"drive{len(servers)}", *options)
        servers.append(s)
        return s

    try:
        yield start
    finally:
        for s in servers:
            s.close()
