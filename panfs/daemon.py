"""The mount daemon: wire client, journal, uploader, cache and core under one nursery.

Owns: the lifetime of one mount: the cache-dir lock, the embedded drive server
(when no account is configured), the services (client → uploader → core), the
kernel session (``pyfuse3.init`` / ``main`` / ``close``), SIGTERM/SIGINT as a
clean unmount, the readiness signal, and the record of which cache dir serves
which mount point (for ``panfs umount --wait`` and ``panfs status``). Must not:
hold filesystem logic (the core) or protocol logic (the client).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import trio

from panfs import embedded, lock, sdnotify
from panfs.attrs import AttrStore
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.config import Config, xdg_dir
from panfs.durability import Syncer
from panfs.fs import Operations
from panfs.journal import Journal
from panfs.metadata import open_db
from panfs.pending import OpenVersions
from panfs.registry import record_mount
from panfs.remote import settings as remote_settings
from panfs.remote.client import open_client
from panfs.uploader import UploadSettings, open_uploader
from panfs.vfs import Core

log = logging.getLogger(__name__)


def fuse_options(cfg: Config, extra: list[str]) -> set[str]:
    opts = {"fsname=panfs", "subtype=panfs", "default_permissions", "noatime"}
    if cfg["mount.allow_other"] or "allow_other" in extra:
        opts.add("allow_other")
    if "ro" in extra:
        opts.add("ro")
    return opts


async def _on_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            log.info("signal received: unmounting")
            pyfuse3.terminate()
            return


async def run_mount(
    cfg: Config, mountpoint: Path, *, options: set[str], ready: Callable[[], None]
) -> None:
    cache_dir = cfg.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(lock.acquire(cache_dir, str(mountpoint)))
        if cfg.embedded:
            drive = embedded.start(xdg_dir("data"), cache_dir / "drive.log")
            stack.callback(drive.stop)
            settings = remote_settings.from_account_file(drive.account_file)
            settings = dataclasses.replace(
                settings,
                endpoint=drive.url,
                token_url=drive.url + "/oauth/access_token",
                refresh_token=drive.mint_refresh_token(),
            )
        else:
            settings = remote_settings.from_config(cfg)
        async with open_client(settings, cache_dir) as client:
            db = open_db(cache_dir / "journal.db")
            stack.callback(db.close)
            journal = Journal(db)
            versions = OpenVersions(db)
            cache = Cache(cache_dir, cfg["cache.min_free"])
            clean = CleanCache(db, cache, cfg["cache.max_size"])
            async with open_uploader(client, journal, UploadSettings.from_config(cfg)) as uploader:
                core = Core(
                    client=client, journal=journal, uploader=uploader, cache=cache,
                    versions=versions, clean=clean, attrs=AttrStore(db),
                    list_ttl=cfg["mount.list_ttl"], uid=os.getuid(), gid=os.getgid(),
                )  # fmt: skip
                core.recover()
                uploader.wake()
                registry = record_mount(mountpoint, cache_dir)
                pyfuse3.init(Operations(core), str(mountpoint), options)
                try:
                    # SIGTERM is handled by _on_signal while mounted and then ignored, so a
                    # second one cannot cut the clean stop short (the last sync, below)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_on_signal)
                        nursery.start_soon(core.reads.run, cfg["mount.read_memory"])
                        nursery.start_soon(Syncer(db, cache_dir / "journal.db", clean).run)
                        log.info("mounted %s (cache %s)", mountpoint, cache_dir)
                        ready()
                        sdnotify.notify("READY=1")
                        await pyfuse3.main()
                        nursery.cancel_scope.cancel()
                finally:
                    sdnotify.notify("STOPPING=1")
                    pyfuse3.close(unmount=True)
                    registry.unlink(missing_ok=True)
                    log.info("unmounted %s", mountpoint)
