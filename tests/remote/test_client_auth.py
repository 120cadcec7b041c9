"""The Open API client's auth, in process against a real drive server over HTTP.

Refresh tokens are single-use (protocol §1): however many calls find the access
token stale at once, exactly one refresh goes out, and the rotated refresh token
is on disk before anything uses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from panfs.remote.client import open_client
from panfs.remote.settings import RemoteSettings
from tests.support.drive import DriveServer


@pytest.fixture
def short_tokens(tmp_path: Path) -> Iterator[DriveServer]:
    s = DriveServer(tmp_path / "d-tok", "--access-token-lifetime", "2")
    try:
        yield s
    finally:
        s.close()


def _settings(drive: DriveServer) -> RemoteSettings:
    acct = drive.account
    return RemoteSettings(
        endpoint=drive.url,
        token_url=drive.url + "/oauth/access_token",
        client_id=acct["client_id"],
        client_secret=acct["client_secret"],
        refresh_token=drive.mint_refresh_token(),
    )


def _refreshes(drive: DriveServer) -> int:
    return int(drive.stats()["requests"].get("access_token", 0))


async def test_concurrent_calls_share_one_refresh(
    short_tokens: DriveServer, tmp_path: Path
) -> None:
    settings = _settings(short_tokens)
    async with open_client(settings, tmp_path / "state") as client:
        await client.space_info()
        first = _refreshes(short_tokens)
        saved = json.loads((tmp_path / "state" / "token.json").read_text())
        assert saved["refresh_token"] != settings.refresh_token  # rotated, and on disk
        await trio.sleep(2.2)  # the access token is dead now
        results: list[int] = []

        async def one() -> None:  # paced: 20 calls of the shared 15/s budget take ~1.5 s
            results.append((await client.space_info()).total_size)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        assert len(results) == 20
        assert _refreshes(short_tokens) == first + 1  # single flight: one refresh for 20 calls
        again = json.loads((tmp_path / "state" / "token.json").read_text())
        assert again["refresh_token"] not in (saved["refresh_token"], settings.refresh_token)


async def test_refresh_happens_before_expiry(short_tokens: DriveServer, tmp_path: Path) -> None:
    """Proactive: at 80 % of the lifetime the client refreshes; no call meets a 401."""
    async with open_client(_settings(short_tokens), tmp_path / "state") as client:
        for _ in range(12):
            await client.space_info()
            await trio.sleep(0.25)
    stats = short_tokens.stats()
    assert stats["requests"]["access_token"] >= 2
    assert not stats["errors"].get("AccessTokenExpired")


async def test_401_refreshes_and_retries_once(drive: DriveServer, tmp_path: Path) -> None:
    async with open_client(_settings(drive), tmp_path / "state") as client:
        await client.space_info()
        before = _refreshes(drive)
        drive.set_faults(
            [
                {
                    "op": "list",
                    "times": 1,
                    "action": "status",
                    "status": 401,
                    "content_type": "application/json",
                    "body": '{"code":"AccessTokenExpired","message":"token expired"}',
                }
            ]
        )
        assert await client.list_folder("root") == []
        assert _refreshes(drive) == before + 1
        assert drive.stats()["requests"]["list"] == 2


async def test_saved_token_is_used_by_the_next_process(
    short_tokens: DriveServer, tmp_path: Path
) -> None:
    """The config's refresh token is spent by the first run; the next one must use the
    saved state (its access token while valid, then the rotated refresh token)."""
    settings = _settings(short_tokens)
    async with open_client(settings, tmp_path / "state") as client:
        await client.space_info()
    async with open_client(settings, tmp_path / "state") as client:
        await client.space_info()
    assert _refreshes(short_tokens) == 1  # the saved access token was still good
    await trio.sleep(2.2)
    async with open_client(settings, tmp_path / "state") as client:
        await client.space_info()  # would be refused with the spent config token
    assert _refreshes(short_tokens) == 2
