"""Run ``panfs upload`` for real against a drive server and read what the server got."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.drive import DriveServer
from tests.support.procs import PANFS, check_logs

MiB = 1 << 20


def make_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        block = os.urandom(min(size, MiB)) if size else b""
        left = size
        i = 0
        while left > 0:
            chunk = bytes([i & 0xFF]) + block[1 : min(left, MiB)]
            f.write(chunk[:left])
            left -= len(chunk[:left])
            i += 1
    return path


def oss_error(code: str, status: int) -> dict[str, Any]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>{code}</Code>\n'
        f"  <Message>injected</Message>\n</Error>"
    )
    return {"action": "status", "status": status, "body": body, "content_type": "application/xml"}


class Uploads:
    def __init__(self, base: Path, drive: DriveServer, **upload: Any) -> None:
        self.base = base
        self.drive = drive
        self.cache = base / "cache"
        sections = {"upload": {"part_size": "1MiB", "rapid_upload": False, **upload}}
        self.config = drive.write_client_config(base / "c.yaml", self.cache, **sections)
        self.log = base / "upload.log"

    def run(
        self, *paths: Path | str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        with open(self.log, "a") as err:
            r = subprocess.run(
                [*PANFS, "upload", "--json", "--config", str(self.config), *map(str, paths)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=600,
                env=dict(os.environ, **(env or {})),
            )
        if check:
            assert r.returncode == 0, self.log.read_text()[-3000:]
        return r

    def events(self, r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    def check_logs(self) -> None:
        check_logs(self.log)


@pytest.fixture
def uploads(tmp_path: Path, drive: DriveServer) -> Callable[..., Uploads]:
    def make(**upload: Any) -> Uploads:
        return Uploads(tmp_path, drive, **upload)

    return make


def _server(tmp_path: Path, name: str, *options: str) -> Any:
    s = DriveServer(tmp_path / name, *options)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def drive_with_short_tokens(tmp_path: Path) -> Any:
    yield from _server(tmp_path, "d-tok", "--access-token-lifetime", "1")


@pytest.fixture
def drive_with_short_urls(tmp_path: Path) -> Any:
    yield from _server(tmp_path, "d-url", "--upload-url-lifetime", "1")


@pytest.fixture
def drive_with_short_sessions(tmp_path: Path) -> Any:
    yield from _server(tmp_path, "d-sess", "--session-lifetime", "2")


@pytest.fixture
def drive_with_cap(tmp_path: Path) -> Any:
    yield from _server(tmp_path, "d-cap", "--max-file-size", "2MiB")
