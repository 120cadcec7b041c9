"""The upload scheduler: several files at once, one strictly sequential part stream each.

Owns: picking ``pending``/``uploading`` jobs from the journal (the durable queue),
running up to ``concurrency`` upload sessions in its nursery, and each job's
failure policy: transient errors are recorded (``error``, ``next_retry_at``) and
retried forever with capped, jittered back-off; permanent ones mark the job
``failed`` with a one-line reason. One job failing never stops the others; only
"the service is gone" (cancellation) escapes. Also the reaper: drive files the
journal dooms (superseded versions that hold one, replaced files whose name went)
are trashed here, retried until the drive confirms. Must not: know FUSE or HTTP.
"""

from __future__ import annotations

import logging
import math
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from panfs.config import Config
from panfs.errors import PanfsError, RemoteError
from panfs.journal import Journal
from panfs.remote.drive import Drive
from panfs.upload_session import SessionSettings, UploadSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadSettings:
    session: SessionSettings
    concurrency: int = 2
    max_backoff: float = 60.0

    @classmethod
    def from_config(cls, cfg: Config) -> UploadSettings:
        return cls(
            SessionSettings(
                part_size=cfg["upload.part_size"],
                rapid_upload=cfg["upload.rapid_upload"],
                rapid_threshold=cfg["upload.rapid_threshold"],
                url_margin=cfg["upload.url_margin"],
            ),
            concurrency=cfg["upload.concurrency"],
            max_backoff=cfg["remote.max_backoff"],
        )


@dataclass
class LiveProgress:
    sent: int
    started: float
    started_sent: int

    def rate(self) -> float:
        dt = time.monotonic() - self.started
        return (self.sent - self.started_sent) / dt if dt > 0.5 else 0.0


# New uploads wait while files are being written (they share the one thread that serves
# FUSE requests: 2,000 small files copied while their uploads ran took twice as long), until
# the writing pauses for GRACE seconds; writing that goes on past MAX_DEFER seconds holds
# them back no longer (until it pauses and starts again).
GRACE = 0.3
MAX_DEFER = 10.0

Runner = Callable[[int], Awaitable[None]]
Trasher = Callable[[str], Awaitable[None]]


class Uploader:
    def __init__(
        self,
        journal: Journal,
        run_job: Runner,
        settings: UploadSettings,
        trash: Trasher | None = None,
    ) -> None:
        self.journal = journal
        self.run_job = run_job
        self.trash = trash
        self.settings = settings
        self.running: set[int] = set()
        self.progress: dict[int, LiveProgress] = {}
        self._wake = trio.Event()
        self._reaped = trio.Event()
        # a lock lives while someone holds or waits for it (or is about to): no clean-up
        self._landing: weakref.WeakValueDictionary[int, trio.Lock] = weakref.WeakValueDictionary()
        self._changed = trio.Event()
        self._rng = random.Random()
        self._written_at = -GRACE  # monotonic time of the last write through the mount
        self._deferring_since = 0.0
        # called (sync, on the trio thread) whenever a job's worker stops, whatever the outcome
        self.on_job_end: list[Callable[[int], None]] = []

    def landing(self, job_id: int) -> trio.Lock:
        """Held by an upload from its complete to the end of its post-steps, and by the
        mount while it changes the name of that upload's file (rename, unlink)."""
        lock = self._landing.get(job_id)
        if lock is None:
            lock = self._landing[job_id] = trio.Lock()
        return lock

    def foreground(self) -> None:
        """A file is being written through the mount: new uploads wait for a pause."""
        self._written_at = time.monotonic()

    def _deferred(self) -> float:
        """Seconds new uploads should still wait for the writing to pause (0: start now)."""
        now = time.monotonic()
        left = self._written_at + GRACE - now
        if left <= 0:  # a pause: the next writing may hold them back again
            self._deferring_since = 0.0
            return 0.0
        self._deferring_since = self._deferring_since or now
        return 0.0 if now - self._deferring_since > MAX_DEFER else left

    def wake(self) -> None:
        """New or changed jobs in the journal: look again. Sync, never blocks."""
        self._wake.set()
        self._reaped.set()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_idle(self) -> None:
        """Return once no job is pending or uploading (failed and interrupted ones don't count)."""
        while self.journal.busy():
            changed = self._changed
            with trio.move_on_after(0.5):
                await changed.wait()

    def live(self, job_id: int) -> LiveProgress | None:
        return self.progress.get(job_id)

    def on_progress(self, job_id: int, sent: int) -> None:
        p = self.progress.get(job_id)
        if p is None:
            self.progress[job_id] = LiveProgress(sent, time.monotonic(), sent)
        else:
            p.sent = sent

    async def _dispatch(self, nursery: trio.Nursery) -> None:
        while True:
            self._wake = trio.Event()
            free = self.settings.concurrency - len(self.running)
            wait = self._deferred() if free > 0 else 0.0
            if wait > 0:
                await trio.sleep(wait)  # files are being written: they go first
                continue
            if free > 0:
                # only as many due jobs as there are free slots: a wake per closed file must
                # not read the whole queue (2,000 queued small files made that quadratic)
                for job_id in self.journal.due(time.time(), self.running, free):
                    self.running.add(job_id)
                    nursery.start_soon(self._worker, job_id)
            with trio.move_on_after(1.0):  # also re-checks jobs whose retry time came
                await self._wake.wait()

    def _end(self, job_id: int) -> None:
        for hook in self.on_job_end:
            try:
                hook(job_id)
            except Exception:  # settling is repaired at the next start; uploads go on
                log.exception("after job %d", job_id)

    async def _reap(self) -> None:
        """Superseded versions not being uploaded: a drive file they hold is doomed, then
        they are settled (cache file, row); doomed drive files are trashed. Transient
        failures wait for the next round."""
        while True:
            for job in self.journal.jobs(("superseded",)):
                if job.id in self.running:
                    continue  # its session notices and stops (or trashes what landed)
                if job.rapid_at is not None and not job.file_id and not await self._sweep(job.id):
                    continue  # a lost create's file may stand: looked for again next round
                log.debug("job %d: superseded, retired (file %s)", job.id, job.file_id)
                self.journal.retire_superseded(job.id)
                self._end(job.id)
            if self.trash is not None:
                for file_id in self.journal.to_trash(time.time()):
                    try:
                        await self.trash(file_id)
                    except RemoteError as e:
                        log.warning("cannot trash a replaced drive file yet: %s", e.describe())
                        break
                    self.journal.trashed(file_id)
                    self._signal()
            with trio.move_on_after(2.0):
                await self._reaped.wait()
            self._reaped = trio.Event()

    async def _sweep(self, job_id: int) -> bool:
        """Let the session of a superseded version look for the file its lost create made
        (and trash it). True when the version may go."""
        self.running.add(job_id)
        try:
            await self.run_job(job_id)
        except (RemoteError, OSError) as e:
            log.info("job %d: a lost create's file not looked for yet: %s", job_id, e)
            return False
        except Exception:  # a bug must not take the reaper (and every trash) down
            log.exception("job %d: looking for a lost create's file", job_id)
            return False
        finally:
            self.running.discard(job_id)
        job = self.journal.get(job_id)
        return job is None or job.rapid_at is None or bool(job.file_id)

    async def _worker(self, job_id: int) -> None:
        log.debug("job %d: upload starts", job_id)
        attempt = 0
        try:
            while True:
                try:
                    await self.run_job(job_id)
                    return
                except RemoteError as e:
                    if not e.transient:
                        self._fail(job_id, e.describe())
                        return
                    reason = e.describe()
                except PanfsError as e:
                    self._fail(job_id, str(e))
                    return
                except (OSError, trio.BrokenResourceError) as e:
                    reason = f"local I/O: {e}"
                except Exception as e:  # a bug must not take the other uploads down
                    log.exception("upload of job %d crashed", job_id)
                    reason = f"internal error: {type(e).__name__}: {e}"
                delay = self._rng.uniform(0.5, 1.0) * min(
                    self.settings.max_backoff, 0.5 * math.pow(2, min(attempt, 16))
                )
                attempt += 1
                log.info("job %d: %s; retry in %.1fs", job_id, reason, delay)
                self.journal.note_error(job_id, reason, time.time() + delay)
                self._signal()
                await trio.sleep(delay)
        finally:
            self.running.discard(job_id)
            self.progress.pop(job_id, None)
            self._end(job_id)
            self._signal()
            self.wake()

    def _fail(self, job_id: int, reason: str) -> None:
        job = self.journal.get(job_id)
        if job is not None and job.state == "superseded":
            log.info("job %d ended (%s): superseded meanwhile", job_id, reason)
            return  # a newer version took over: nothing of this one is to be kept
        log.info("job %d failed: %s", job_id, reason)
        self.journal.set_state(job_id, "failed", reason[:300])


@asynccontextmanager
async def open_scheduler(
    journal: Journal, run_job: Runner, settings: UploadSettings, trash: Trasher | None = None
) -> AsyncIterator[Uploader]:
    """A scheduler over any ``run_job(job_id)`` (tests use it without files or a drive)."""
    async with trio.open_nursery() as nursery:
        up = Uploader(journal, run_job, settings, trash)
        nursery.start_soon(up._dispatch, nursery)
        nursery.start_soon(up._reap)
        try:
            yield up
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_uploader(
    client: Drive, journal: Journal, settings: UploadSettings
) -> AsyncIterator[Uploader]:
    ups: list[Uploader] = []

    async def run_job(job_id: int) -> None:
        up = ups[0]
        await UploadSession(
            client, journal, job_id, settings.session, up.on_progress, up.landing(job_id)
        ).run()

    async with open_scheduler(journal, run_job, settings, client.trash) as uploader:
        ups.append(uploader)
        yield uploader
