"""One file's sequential multipart upload: plan, create or resume, stream, verify, complete.

Owns: converging one journal job to a complete, hash-verified file on the drive,
whatever happened before: the server's part list wins on resume (every page,
offsets from the server's ``part_size``); a part the journal never recorded is
verified against local bytes before it is adopted; ``PartAlreadyExist`` and
``PartNotSequential`` mean "re-list and realign", never "skip"; ``NoSuchUpload`` /
``NotFound.UploadId`` mean a new session (after checking whether the last one
already completed); a changed source means a new session, never a mix of old and
new bytes. One PUT in flight; ``Content-Length`` always. Transient errors escape
to the scheduler (it records them and retries with back-off); permanent ones
escape as they are. Must not: loop on an error without re-listing, or decide
scheduling.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from panfs import crashpoint
from panfs.errors import PartError, PermanentError, RemoteNotFoundError, UploadFailed
from panfs.hashing import PartBody, range_digests, read_at, sha1_hasher
from panfs.journal import Job, Journal, PartRecord, identity
from panfs.remote.client import OpenApiClient, PreHashMatchedError, RapidProof
from panfs.remote.models import CreateResult, UploadUrl

log = logging.getLogger(__name__)

MiB = 1 << 20
MAX_PARTS = 10000
MAX_REALIGN = 50  # realignments within one run before giving the job back to the scheduler


@dataclass(frozen=True)
class SessionSettings:
    part_size: int = 16 * MiB
    rapid_upload: bool = True
    rapid_threshold: int = 100 * MiB
    url_margin: float = 300.0


def plan_part_size(size: int, wanted: int) -> int:
    """``wanted``, grown (to whole MiB) so the file needs at most 10000 parts."""
    need = math.ceil(size / MAX_PARTS) if size else 0
    if need <= wanted:
        return wanted
    return math.ceil(need / MiB) * MiB


def part_sizes(size: int, part: int) -> list[int]:
    if size == 0:
        return [0]
    n = math.ceil(size / part)
    return [part] * (n - 1) + [size - part * (n - 1)]


@contextlib.contextmanager
def _unwrap_single() -> Iterator[None]:
    """A nursery wraps errors in a group; one error leaves it as itself (the scheduler
    classifies ``RemoteError`` & co., not groups)."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Superseded(Exception):
    """A newer version of the file exists: abandon this session quietly."""


class CorruptSession(Exception):
    """The server's parts do not match our bytes: start a new session."""


class CompleteRefused(Exception):
    """complete failed one of the drive's checks (§4.10): re-list and send what it lacks."""


# complete's checks: a part too small, parts not adding up to the size, a content hash
COMPLETE_CHECKS = (
    "InvalidResource.PartList",
    "InvalidParameter.Size",
    "InvalidParameter.ContentHash",
)


class UploadSession:
    def __init__(
        self,
        client: OpenApiClient,
        journal: Journal,
        job_id: int,
        settings: SessionSettings,
        on_progress: Any = None,
        landing: trio.Lock | None = None,
    ) -> None:
        self.client = client
        # held from complete to the end of the post-steps (the mount takes it to rename
        # or unlink this upload's file): the two never interleave
        self.landing = landing or trio.Lock()
        self._landing_held = False
        self.journal = journal
        self.job_id = job_id
        self.settings = settings
        self.on_progress = on_progress or (lambda job_id, sent: None)
        self.urls: dict[int, UploadUrl] = {}
        self.resent_checks = 0

    @contextlib.asynccontextmanager
    async def _landing(self) -> AsyncIterator[None]:
        if self._landing_held:
            yield
            return
        async with self.landing:
            self._landing_held = True
            try:
                yield
            finally:
                self._landing_held = False

    def job(self) -> Job:
        job = self.journal.get(self.job_id)
        if job is None:
            raise Superseded()
        if job.state == "superseded":
            raise Superseded()
        return job

    # -- entry ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except Superseded:
            log.info("job %d superseded: abandoned", self.job_id)

    async def _run(self) -> None:
        job = self.job()
        if job.state in ("done", "failed", "interrupted"):
            return
        try:
            now_ident = await trio.to_thread.run_sync(identity, job.source)
        except FileNotFoundError:
            raise UploadFailed(f"{job.source} no longer exists; nothing to upload") from None
        if now_ident != job.identity:
            # the local file changed since the session was planned: never mix old and new bytes
            log.info("%s changed locally: new session", job.source)
            self.journal.set_identity(self.job_id, now_ident)
            self.journal.drop_session(self.job_id)
            job = self.job()
        self.journal.set_state(self.job_id, "uploading")
        for _ in range(3):
            try:
                await self._converge(self.job())
                return
            except CorruptSession as e:
                log.info("job %d: %s: new session", self.job_id, e)
                self.journal.drop_session(self.job_id)
        raise UploadFailed("the drive kept storing parts that differ from the local bytes")

    async def _converge(self, job: Job) -> None:
        if job.file_id and not job.upload_id:
            async with self._landing():  # rapid upload done, post-steps may remain
                await self._finish(self.job(), None)
            return
        sha1 = None
        if job.file_id and job.upload_id:
            try:
                offset, next_part = await self._reconcile(job)
            except RemoteNotFoundError:
                if await self._already_complete(job):
                    return
                self.journal.drop_session(self.job_id)
                job = self.job()
            else:
                await self._stream(self.job(), offset, next_part, None)
                return
        if await self._try_rapid(job):
            return
        sha1 = await sha1_hasher(job.source, 0)
        await self._create(job)
        await self._stream(self.job(), 0, 1, sha1)

    # -- session creation ----------------------------------------------------------------
    async def _create(self, job: Job) -> None:
        part = plan_part_size(job.size, self.settings.part_size)
        res = await self.client.create_file(
            job.parent_file_id, job.name, job.size, part_sizes(job.size, part)
        )
        crashpoint.reach("after_create")
        self._record_session(job, res, part)

    def _record_session(self, job: Job, res: CreateResult, part: int) -> None:
        """Durable intent: the session is journaled before its first PUT. No await."""
        self.job()  # superseded while creating? then the session stays an invisible orphan
        self.journal.start_session(
            self.job_id,
            file_id=res.file_id,
            upload_id=res.upload_id,
            part_size=part,
            parent_file_id=job.parent_file_id,
            name=job.name,
        )
        self.urls = {u.part_number: u for u in res.part_urls}

    async def _try_rapid(self, job: Job) -> bool:
        s = self.settings
        if not s.rapid_upload or job.size < s.rapid_threshold or job.size == 0:
            return False
        head = (await range_digests(job.source, 0, min(1024, job.size), "sha1"))["sha1"]
        part = plan_part_size(job.size, s.part_size)
        try:
            res = await self.client.create_file(
                job.parent_file_id, job.name, job.size, part_sizes(job.size, part), pre_hash=head
            )
        except PreHashMatchedError:
            full = (await range_digests(job.source, 0, job.size, "sha1"))["sha1"]

            async def reader(off: int, n: int) -> bytes:
                return await read_at(job.source, off, n)

            res = await self.client.create_file(
                job.parent_file_id,
                job.name,
                job.size,
                part_sizes(job.size, part),
                rapid=RapidProof(full, job.size, reader),
            )
        if res.rapid_upload:
            # the file exists on the drive now: recorded whatever the job's state, so a
            # version superseded meanwhile is found and trashed by the reaper
            self.journal.note_file(self.job_id, res.file_id, job.parent_file_id, job.name)
            async with self._landing():
                self.job()
                self.journal.mark_landed(self.job_id)
                log.info("%s: rapid upload, no bytes sent", job.remote_path)
                await self._finish(self.job(), None)
            return True
        self.job()
        self._record_session(job, res, part)
        await self._stream(self.job(), 0, 1, await sha1_hasher(job.source, 0))
        return True

    # -- reconciliation with the server ---------------------------------------------------
    async def _reconcile(self, job: Job) -> tuple[int, int]:
        """The server's parts win: adopt (after verifying) or refuse; returns (offset, next)."""
        assert job.file_id
        assert job.upload_id
        server = await self.client.list_uploaded_parts(job.file_id, job.upload_id)
        known = {p.part_number: p for p in self.journal.parts(self.job_id)}
        offset = 0
        for i, p in enumerate(server, 1):
            if p.part_number != i:
                raise CorruptSession(f"the drive's parts have a gap at {i}")
            if offset + p.part_size > job.size:
                raise CorruptSession(f"part {i} reaches past the end of the file")
            rec = known.get(i)
            if not (
                rec and rec.etag == p.etag and rec.size == p.part_size and rec.offset == offset
            ):
                d = await range_digests(job.source, offset, p.part_size, "md5", "xxh3")
                self.resent_checks += 1
                if d["md5"] != p.etag:
                    raise CorruptSession(f"part {i} on the drive differs from the local bytes")
                self.journal.record_part(
                    self.job_id, PartRecord(i, offset, p.part_size, p.etag, d["xxh3"], time.time())
                )
            offset += p.part_size
        self.journal.drop_parts_after(self.job_id, len(server))
        self.on_progress(self.job_id, offset)
        return offset, len(server) + 1

    async def _already_complete(self, job: Job) -> bool:
        """The session is gone: did our complete land before a crash? Check the file itself."""
        assert job.file_id
        try:
            remote = await self.client.get_file(job.file_id)
        except RemoteNotFoundError:
            return False
        if remote.size != job.size:
            return False
        local = (await range_digests(job.source, 0, job.size, "sha1"))["sha1"]
        if remote.content_hash.upper() != local:
            return False
        async with self._landing():
            self.job()  # superseded: the reaper trashes the completed file (the job holds it)
            self.journal.mark_landed(self.job_id)
            await self._finish(self.job(), local)
        return True

    # -- the part loop ---------------------------------------------------------------------
    async def _url(self, job: Job, n: int) -> str:
        u = self.urls.get(n)
        if u is None or u.expires_at - self.settings.url_margin < time.time():
            assert job.file_id
            assert job.upload_id
            want = list(range(n, n + 16))
            self.urls.update(await self.client.get_upload_urls(job.file_id, job.upload_id, want))
            u = self.urls.get(n)
            if u is None:
                raise UploadFailed(f"the drive gave no upload URL for part {n}")
        return u.url

    async def _stream(self, job: Job, offset: int, n: int, sha1: Any) -> None:
        """Send parts from ``offset`` as part ``n`` onwards, then complete. If the drive
        refuses to complete (part list, size or hash check), its parts are re-listed and
        whatever it lacks is sent again; a second refusal with nothing missing stops the
        job with the drive's reason (the parts stay, nothing is deleted)."""
        refusals = 0
        digest: str | None = None
        while True:
            digest = await self._send_parts(job, offset, n, sha1, digest)
            try:
                await self._complete(self.job(), digest)
                return
            except CompleteRefused as e:
                refusals += 1
                if refusals > 1:
                    raise UploadFailed(f"the drive refuses to complete the upload: {e}") from None
                log.info("job %d: complete refused (%s): re-listing parts", self.job_id, e)
                job = self.job()
                offset, n = await self._reconcile(job)
                sha1 = None  # the file's SHA-1 is known: the source is unchanged

    async def _send_parts(
        self, job: Job, offset: int, n: int, sha1: Any, known: str | None = None
    ) -> str:
        """Send parts from ``offset`` as part ``n`` onwards; ``sha1`` covers [0, offset), or
        is None with the file's SHA-1 ``known``, or None (resume: the whole-file SHA-1 is
        computed beside the upload). Returns the whole file's SHA-1 once every part is
        acknowledged and the source is unchanged."""
        with _unwrap_single():
            digest = await self._send_loop(job, offset, n, sha1, known)
        now_ident = await trio.to_thread.run_sync(identity, job.source)
        if now_ident != job.identity:
            self.journal.set_identity(self.job_id, now_ident)
            raise CorruptSession(f"{job.source} changed during the upload")
        return digest

    async def _send_loop(self, job: Job, offset: int, n: int, sha1: Any, known: str | None) -> str:
        assert job.file_id
        assert job.upload_id
        assert job.part_size
        part = job.part_size
        full_sha1: dict[str, str] = {"v": known} if known else {}
        async with trio.open_nursery() as nursery:
            if sha1 is None and known is None:
                # resume: hash the local file concurrently with sending the rest
                async def whole() -> None:
                    digests = await range_digests(job.source, 0, job.size, "sha1")
                    full_sha1["v"] = digests["sha1"]

                nursery.start_soon(whole)
            realigns = 0
            while offset < job.size or (job.size == 0 and n == 1):
                length = min(part, job.size - offset)
                self.job()  # superseded? stop sending
                url = await self._url(job, n)
                body = PartBody(job.source, offset, length, sha1.copy() if sha1 else None)
                try:
                    etag = await self._put(url, body, length)
                except PartError as e:
                    if e.url_expired:
                        self.urls.pop(n, None)
                        continue
                    if e.code in ("PartAlreadyExist", "PartNotSequential"):
                        realigns += 1
                        if realigns > MAX_REALIGN:
                            raise
                        offset, n, sha1 = await self._realign(job, sha1)
                        continue
                    if e.code == "NoSuchUpload":
                        raise CorruptSession("the drive lost the upload session") from None
                    raise
                crashpoint.reach("after_part_ack")
                local = body.md5.hexdigest().upper()
                if etag != local:
                    # the server stored something else (a cut part kept as complete?): realign
                    realigns += 1
                    if realigns > MAX_REALIGN:
                        raise CorruptSession("the drive's ETags keep differing from ours")
                    offset, n, sha1 = await self._realign(job, sha1)
                    continue
                self.journal.record_part(
                    self.job_id,
                    PartRecord(n, offset, length, etag, body.xxh3.hexdigest().upper(), time.time()),
                )
                if sha1 is not None:
                    sha1 = body.sha1
                offset += length
                n += 1
                self.on_progress(self.job_id, offset)
        return str(sha1.hexdigest().upper() if sha1 is not None else full_sha1["v"])

    async def _put(self, url: str, body: PartBody, length: int) -> str:
        """PUT one part while its next chunk is read and hashed (one chunk ahead: a channel
        of 1 is the pipeline, and bounds memory to two chunks)."""
        with _unwrap_single():
            async with trio.open_nursery() as nursery:
                send, receive = trio.open_memory_channel[bytes](1)
                nursery.start_soon(body.produce, send)
                etag = await self.client.put_part(url, body.consume(receive), length)
                nursery.cancel_scope.cancel()  # an early answer must not leave it waiting
        return etag

    async def _realign(self, job: Job, sha1: Any) -> tuple[int, int, Any]:
        offset, n = await self._reconcile(job)
        if sha1 is not None:
            sha1 = await sha1_hasher(job.source, offset)
        return offset, n, sha1

    # -- completion ------------------------------------------------------------------------
    async def _complete(self, job: Job, sha1: str) -> None:
        async with self._landing():
            await self._complete_locked(job, sha1)

    async def _complete_locked(self, job: Job, sha1: str) -> None:
        assert job.file_id
        assert job.upload_id
        await self.client._token()  # refresh now, so nothing yields between check and send
        self.job()  # a newer version exists: never complete this one over it
        crashpoint.reach("before_complete")
        try:
            remote = await self.client.complete(job.file_id, job.upload_id)
        except RemoteNotFoundError:
            if await self._already_complete(job):
                return
            raise CorruptSession("the drive lost the session before complete") from None
        except PermanentError as e:
            if e.code in COMPLETE_CHECKS:
                raise CompleteRefused(e.describe()) from None
            raise
        crashpoint.reach("after_complete")
        latest = self.journal.get(self.job_id)
        if latest is None or latest.state == "superseded":
            # superseded while complete was in flight: this version must not stay visible
            # (doomed first, so a crash before the trash is finished by the reaper)
            await self._trash(job.file_id, "superseded while its complete was in flight")
            raise Superseded()
        if remote.content_hash.upper() != sha1 or remote.size != job.size:
            await self._trash(job.file_id, "its content hash differed from the local bytes")
            raise CorruptSession(
                f"the drive's content_hash {remote.content_hash} differs from ours {sha1}"
            )
        # one step with the check above (no await between): from here on this version IS
        # the name on the drive; a newer version replaces it instead of superseding it
        self.journal.mark_landed(self.job_id)
        log.debug("job %d landed as %s", self.job_id, job.file_id)
        await self._finish(job, sha1)

    async def _trash(self, file_id: str, reason: str) -> None:
        self.journal.doom([file_id], reason)
        await self.client.trash(file_id)
        self.journal.trashed(file_id)

    async def _finish(self, job: Job, sha1: str | None) -> None:
        """After the hashes agreed: follow renames, retire the replaced version, mark done."""
        job = self.job()  # abandoned (its name was removed)? the reaper trashes the file
        assert job.file_id
        while (job.created_parent, job.created_name) != (job.parent_file_id, job.name):
            try:
                if job.created_parent != job.parent_file_id:
                    await self.client.move(job.file_id, job.parent_file_id, new_name=job.name)
                else:
                    await self.client.rename(job.file_id, job.name, check_name_mode="ignore")
            except RemoteNotFoundError:
                self.job()
                raise
            self.journal.mark_rapid(self.job_id, job.file_id, job.parent_file_id, job.name)
            job = self.job()  # renamed again while the move was in flight? follow it
        crashpoint.reach("after_move")
        if job.replaces_file_id and job.replaces_file_id != job.file_id:
            await self.client.trash(job.replaces_file_id)
            crashpoint.reach("after_trash_replaced")
        self.journal.mark_done(self.job_id, job.size)
        self.on_progress(self.job_id, job.size)
        log.info("uploaded %s (%d bytes)", job.remote_path, job.size)
