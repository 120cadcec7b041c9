"""``open_core``: the one place tests build a ``panfs.vfs.Core`` in process.

Wired as ``panfs/daemon.py`` wires it (real client over HTTP to a ``DriveServer``,
real journal, cache, clean cache and attribute store in a cache dir), minus the
kernel. When the ``Core`` constructor or its wiring changes, adapt this file only.

``CoreRig`` API: ``core``, ``uploader``, ``journal``, ``cache_dir``; ``wait_idle()``
(what ``panfs umount --wait`` waits for); ``crash()`` marks the rig so that leaving
the context drops it like a SIGKILL would: no settle hooks, no clean shutdown of
anything the core owns (the journal database is closed without a checkpoint, which
SQLite treats like a dead process).

``test_sections()`` adds settings that make tests fast, keeping only keys this
version of the config knows (``upload.delay`` may not exist yet); ``client_settings()``
is the ``RemoteSettings`` a client built from them gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from panfs import config as panfs_config
from panfs.attrs import AttrStore
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.journal import Journal
from panfs.metadata import open_db
from panfs.paths import Layout
from panfs.pending import OpenVersions
from panfs.remote import settings as remote_settings
from panfs.remote.client import OpenApiClient, open_client
from panfs.remote.settings import RemoteSettings
from panfs.uploader import Uploader, UploadSettings, open_uploader
from panfs.vfs import Core
from tests.support.drive import DriveServer


def test_sections(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Config sections for tests: small write-back delay, short backoff, no min_free;
    ``sections`` override. Keys the config schema does not know are dropped."""
    base: dict[str, dict[str, Any]] = {
        "upload": {"delay": 0.2},
        "cache": {"min_free": 0},
        "remote": {"max_backoff": 0.5},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return {
        name: {k: v for k, v in values.items() if f"{name}.{k}" in panfs_config.SCHEMA}
        for name, values in base.items()
    }


test_sections.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


def client_settings(drive: DriveServer, cache_dir: Path, **over: Any) -> RemoteSettings:
    """The client settings a mount of ``drive`` with ``test_sections()`` would use (its own
    refresh token, short backoff), read through the config as the daemon reads it;
    ``over`` replaces fields (``api_attempts=2``)."""
    cfg = panfs_config.from_mapping(drive.client_config(cache_dir, **test_sections()))
    return dataclasses.replace(remote_settings.from_config(cfg), **over)


@contextlib.asynccontextmanager
async def test_client(
    drive: DriveServer, tmp_path: Path, **over: Any
) -> AsyncIterator[OpenApiClient]:
    """A client of ``drive`` as a mount would open it (``client_settings``; ``over``
    replaces fields), its state under ``tmp_path``."""
    settings = client_settings(drive, tmp_path / "cache", **over)
    async with open_client(settings, tmp_path / "state") as client:
        yield client


test_client.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


async def upload_bytes(client: OpenApiClient, parent: str, name: str, data: bytes) -> str:
    """A file of ``data`` on the drive, in one part; its file id."""
    res = await client.create_file(parent, name, len(data), [len(data)])
    urls = await client.get_upload_urls(res.file_id, res.upload_id, [1])
    await client.put_part(urls[1].url, data, len(data))
    await client.complete(res.file_id, res.upload_id)
    return res.file_id


@dataclass
class CoreRig:
    core: Core
    uploader: Uploader
    journal: Journal
    cache_dir: Path
    crashed: bool = False
    fds: list[int] = field(default_factory=list)

    async def wait_idle(self) -> None:
        """Every closed version queued and uploaded (what ``umount --wait`` waits for)."""
        while self.core.versions.closing:  # noqa: ASYNC110 (a few ms: no event for it)
            await trio.sleep(0.005)
        await self.uploader.wait_idle()

    def crash(self) -> None:
        self.crashed = True


@contextlib.asynccontextmanager
async def open_core(
    drive: DriveServer, cache_dir: Path, **sections: dict[str, Any]
) -> AsyncIterator[CoreRig]:
    """A Core over ``cache_dir`` talking to ``drive``; leaving the context stops it
    (cleanly, or like a SIGKILL after ``rig.crash()``)."""
    raw = drive.client_config(cache_dir, **test_sections(**sections))
    cfg = panfs_config.from_mapping(raw)
    layout = Layout.of(cfg)
    layout.make()
    state_dir = layout.state_dir
    settings = remote_settings.from_config(cfg)
    async with open_client(settings, state_dir) as client:
        db = open_db(layout.journal)
        try:
            journal = Journal(db)
            cache = Cache(state_dir, cfg["cache.min_free"], clean_root=layout.cache_dir)
            clean = CleanCache(db, cache, cfg["cache.max_size"])
            async with open_uploader(client, journal, UploadSettings.from_config(cfg)) as uploader:
                core = Core(
                    client=client, journal=journal, uploader=uploader, cache=cache,
                    versions=OpenVersions(db), clean=clean, attrs=AttrStore(db),
                    list_ttl=cfg["mount.list_ttl"], uid=os.getuid(), gid=os.getgid(),
                    upload_delay=cfg["upload.delay"], link_suffix=cfg["mount.link_suffix"],
                )  # fmt: skip
                core.recover()
                uploader.wake()
                rig = CoreRig(core, uploader, journal, cache_dir)
                async with trio.open_nursery() as nursery:
                    # the cache's background task, as the daemon runs it: spares made ahead
                    nursery.start_soon(cache.keep_spares)
                    await nursery.start(core.versions.run)  # as the daemon queues closes
                    try:
                        yield rig
                    finally:
                        if rig.crashed:
                            uploader.on_job_end.clear()  # a dead process settles nothing
                            core.versions.drop_queue()  # nor queues what closed
                        nursery.cancel_scope.cancel()
                        for h in list(core.handles.values()):
                            if h.fd >= 0:
                                with contextlib.suppress(OSError):
                                    os.close(h.fd)
        finally:
            db.close()
