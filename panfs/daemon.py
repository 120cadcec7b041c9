"""The mount daemon: wire client, journal, uploader, cache and core under one nursery.

Owns: the lifetime of one mount: the state-dir lock, the embedded drive server
(when no account is configured), the services (client → uploader → core), the
kernel session (``pyfuse3.init`` / ``main`` / ``close``), SIGTERM/SIGINT as a
clean unmount, SIGUSR1 as "the journal changed, look again" (``panfs retry``),
the readiness signal, the record of which state dir serves which mount point
(the registry, and the mount's fsname ``panfs:STATE_DIR`` any user can read in
/proc/self/mountinfo), the mount options, and a WARNING line for every upload
that failed or is being retried. Must not: hold filesystem logic (the core) or
protocol logic (the client).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import trio

from panfs import embedded, lock, mounts, sdnotify, taskdump
from panfs import health as drive_health
from panfs.attrs import AttrStore
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.config import Config, xdg_dir
from panfs.durability import Syncer
from panfs.fs import Operations
from panfs.journal import Journal
from panfs.logs import quote
from panfs.metadata import open_db
from panfs.mount_options import MountOptions
from panfs.paths import Layout
from panfs.pending import OpenVersions
from panfs.registry import record_mount
from panfs.remote import settings as remote_settings
from panfs.remote.client import open_client
from panfs.uploader import UploadSettings, open_uploader
from panfs.vfs import Core

log = logging.getLogger(__name__)


def fuse_options(cfg: Config, mopts: MountOptions, state_dir: Path) -> set[str]:
    opts = {f"fsname={mounts.fsname(state_dir)}", "subtype=panfs", "default_permissions",
            "noatime"}  # fmt: skip
    if cfg.mount.allow_other or mopts.allow_other:
        opts.add("allow_other")
    if mopts.ro:
        opts.add("ro")
    return opts


async def _on_signal(wake: Callable[[], None]) -> None:
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
    with trio.open_signal_receiver(*sigs) as signals:
        async for signum in signals:
            if signum == signal.SIGUSR1:
                log.info("the journal changed (panfs retry / forget): looking again")
                wake()
                continue
            if signum == signal.SIGUSR2:
                log.warning("what each task waits on (SIGUSR2):\n%s", taskdump.task_tree())
                continue
            log.info("signal received: unmounting")
            pyfuse3.terminate()
            return


class _Reporter:
    """One WARNING per failed upload, and per new error of an upload being retried, with
    the file's name quoted (a name cannot forge a log line); and ``STATE_DIR/drive-health.json``
    (``panfs.health``) while uploads fail and the drive has acknowledged no part for
    ``grace`` seconds: since its last acknowledgement, and the last error (``panfs status``
    shows it instead of a stale rate). One error between acknowledged parts is not an
    outage: the file appears only after ``grace`` seconds without one, and goes once the
    drive acknowledges a part again, or nothing is being retried."""

    def __init__(self, journal: Journal, state_dir: Path, grace: float) -> None:
        self.journal = journal
        self.state_dir = state_dir
        self.grace = grace
        self.seen: dict[int, str] = {}  # job id -> its error already logged
        self.last_ack = time.time()  # as far as this daemon knows: it is answering
        self.written = False
        drive_health.clear(state_dir)

    def job_ended(self, job_id: int) -> None:
        self.seen.pop(job_id, None)
        job = self.journal.get(job_id)
        if job is not None and job.state == "failed":
            log.warning("upload failed for good: %s: %s; after fixing the cause run: "
                        "panfs retry", quote(job.remote_path), job.error)  # fmt: skip

    def check(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        erroring = self.journal.erroring()
        for job in erroring:
            if job.error and self.seen.get(job.id) != job.error:
                log.warning("upload of %s: %s; retrying", quote(job.remote_path), job.error)
        # a job no longer erroring (its retry got through, it ended, it was forgotten) goes:
        # its next error is news
        self.seen = {job.id: job.error for job in erroring if job.error}
        acked = self.journal.acked_since(self.last_ack)
        if acked is not None:
            self.last_ack = acked
        # a new try clears its job's error while it runs: once down, the drive stays down
        # until it acknowledges a part, or nothing waits for it any more
        retrying = bool(erroring) or (self.written and acked is None and self.journal.busy())
        down = retrying and now - self.last_ack >= self.grace
        if down and not self.written:
            drive_health.write(self.state_dir, self.last_ack, erroring[0].error or "")
            self.written = True
        elif self.written and not down:
            if acked is not None:
                log.info("the drive acknowledges parts again")
            drive_health.clear(self.state_dir)
            self.written = False

    async def watch(self, every: float = 1.0) -> None:
        try:
            while True:
                self.check()
                await trio.sleep(every)
        finally:
            drive_health.clear(self.state_dir)


async def run_mount(
    cfg: Config,
    layout: Layout,
    mountpoint: Path,
    *,
    ready: Callable[[], None],
    mopts: MountOptions | None = None,
) -> None:
    """Mount at ``mountpoint`` until unmounted or signalled; ``layout``'s dirs exist (the
    caller made them, and moved an earlier layout)."""
    # SIGUSR1 (panfs retry / forget wake whoever holds the state dir's lock) would kill the
    # process outside _on_signal's window: the lock is held from here on, and after it
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    mopts = mopts or MountOptions()
    state_dir = layout.state_dir
    options = fuse_options(cfg, mopts, state_dir)
    with contextlib.ExitStack() as stack:
        stack.enter_context(lock.acquire(state_dir, str(mountpoint)))
        if cfg.embedded:
            drive = embedded.start(xdg_dir("data"), state_dir / "drive.log")
            stack.callback(drive.stop)
            # the config's timeouts, back-off and rate limits hold for the embedded drive too
            settings = remote_settings.from_account_file(
                drive.account_file,
                connect_timeout=cfg.remote.connect_timeout,
                read_timeout=cfg.remote.read_timeout,
                max_backoff=cfg.remote.max_backoff,
                rate_limits=cfg.remote.rate_limits,
            )
            settings = dataclasses.replace(
                settings,
                endpoint=drive.url,
                token_url=drive.url + "/oauth/access_token",
                refresh_token=drive.mint_refresh_token(),
            )
        else:
            settings = remote_settings.from_config(cfg)
        async with open_client(settings, state_dir) as client:
            db = open_db(layout.journal)
            stack.callback(db.close)
            journal = Journal(db)
            versions = OpenVersions(db)
            cache = Cache(state_dir, cfg.cache.min_free, clean_root=layout.cache_dir)
            clean = CleanCache(db, cache, cfg.cache.max_size)
            async with open_uploader(client, journal, UploadSettings.from_config(cfg)) as uploader:
                uid = os.getuid() if mopts.uid is None else mopts.uid
                gid = os.getgid() if mopts.gid is None else mopts.gid
                core = Core(
                    client=client, journal=journal, uploader=uploader, cache=cache,
                    versions=versions, clean=clean, attrs=AttrStore(db),
                    list_ttl=cfg.mount.list_ttl, uid=uid, gid=gid,
                    upload_delay=cfg.upload.delay, link_suffix=cfg.mount.link_suffix,
                )  # fmt: skip
                reporter = _Reporter(journal, state_dir, cfg.remote.unreachable_after)
                uploader.on_job_end.append(reporter.job_ended)
                core.recover()
                uploader.wake()
                registry = record_mount(mountpoint, state_dir)
                ops = Operations(core)
                ops.umask = mopts.umask
                pyfuse3.init(ops, str(mountpoint), options)
                try:
                    # SIGTERM is handled by _on_signal while mounted and then ignored, so a
                    # second one cannot cut the clean stop short (the last sync, below)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    async with trio.open_nursery() as nursery:

                        def journal_changed() -> None:
                            core.journal_changed()
                            uploader.wake()

                        nursery.start_soon(_on_signal, journal_changed)
                        nursery.start_soon(reporter.watch)
                        nursery.start_soon(core.reads.run, cfg.mount.read_memory)
                        nursery.start_soon(cache.keep_spares)
                        await nursery.start(core.versions.run)  # queues closed versions
                        syncer = Syncer(db, layout.journal, clean)
                        core.versions.durable = syncer.sync  # fsync(): at once, not in 1 s
                        nursery.start_soon(syncer.run)
                        log.info("mounted %s (pid %d, state %s, cache %s)", mountpoint,
                                 os.getpid(), state_dir, layout.cache_dir)  # fmt: skip
                        ready()
                        sdnotify.notify("READY=1")
                        await pyfuse3.main()
                        nursery.cancel_scope.cancel()
                finally:
                    sdnotify.notify("STOPPING=1")
                    pyfuse3.close(unmount=True)
                    registry.unlink(missing_ok=True)
                    log.info("unmounted %s", mountpoint)
