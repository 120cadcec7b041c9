"""One file's sequential multipart upload: plan, create or resume, stream, verify, complete.

Owns: converging one journal job to a complete, verified file on the drive,
whatever happened before and whichever reading of the protocol the drive follows:
the server's part list wins on resume (every page; offsets from its ``part_size``
where it gives one, else from the journal, else from the plan recorded at create);
a part the journal never recorded is adopted only when its ETag proves it equals
the local bytes, otherwise the session starts over (never adopted blindly, never
a loop); ``PartConflict`` means "re-list and realign", never "skip";
``SessionGone`` from any call means a new session, decided in ``_session_gone``
(after checking whether the last one already completed); a changed source means a
new session, never a mix of old and new bytes. The part ETag is a check only once
the session has shown it is an MD5; the whole file is checked by ``content_hash``
when the drive gives one, else by its size and a read-back of its first and last
part. One PUT in flight; ``Content-Length`` always. Transient errors escape to the
scheduler (it records them and retries with back-off); permanent ones escape as
they are. Must not: loop on an error without re-listing, or decide scheduling.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import trio

from panfs import crashpoint
from panfs.errors import (
    CompleteRejected,
    CreateMaybeApplied,
    NoDownloadUrl,
    PartConflict,
    PartError,
    PermanentError,
    RateLimitedError,
    RemoteNotFoundError,
    SessionGone,
    TransientError,
    UploadFailed,
)
from panfs.hashing import PartBody, range_digests, read_at, sha1_hasher
from panfs.journal import LATE, Job, Journal, PartRecord, identity
from panfs.remote.drive import MAX_PARTS, Drive
from panfs.remote.models import CreateResult, RapidProof, RemoteFile, UploadUrl
from panfs.remote.responses import PreHashMatchedError
from panfs.remote.retry import backoff

log = logging.getLogger(__name__)

MiB = 1 << 20
MAX_REALIGN = 50  # realignments within one run before giving the job back to the scheduler
MAX_SESSIONS_GONE = 5  # new sessions within one run before giving the job back to the scheduler
MAX_PART_FAILURES = 8  # transient part failures within one run before the scheduler takes over
URL_BATCH = 16  # upload URLs asked at once (never beyond the parts declared at create)
EMPTY_SHA1 = hashlib.sha1(b"").hexdigest().upper()
_HEX32 = re.compile(r"^[0-9A-F]{32}$")


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
    classifies ``RemoteError`` & co., not groups). Cancelled (a stop) while a task of it
    failed (its source removed meanwhile): the cancellation goes on alone, or the failure,
    left in a group once the cancel scope takes its ``Cancelled``, would escape every
    handler and take the scheduler down."""
    try:
        yield
    except BaseExceptionGroup as group:
        cancelled, _ = group.split(trio.Cancelled)
        if cancelled is not None:
            raise cancelled.exceptions[0] from None
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class Superseded(Exception):
    """A newer version of the file exists: abandon this session quietly."""


class CorruptSession(Exception):
    """The server's parts do not match our bytes: start a new session."""


class UnverifiablePart(CorruptSession):
    """The drive lists a part the journal lacks with nothing to verify it by: start a new
    session (never adopt it blindly). Not a sign of a bad drive: it does not count
    towards giving the file up."""


class UploadSession:
    def __init__(
        self,
        client: Drive,
        journal: Journal,
        job_id: int,
        settings: SessionSettings,
        on_progress: Any = None,
        landing: trio.Lock | None = None,
    ) -> None:
        self.client = client
        # held from the last supersede check to the end of the post-steps (the mount takes
        # it to rename or unlink this upload's file): the two never interleave
        self.landing = landing or trio.Lock()
        self.journal = journal
        self.job_id = job_id
        self.settings = settings
        self.on_progress = on_progress or (lambda job_id, sent: None)
        self.urls: dict[int, UploadUrl] = {}
        # is this session's part ETag the MD5 of the part? None until a part shows it
        self.etag_md5: bool | None = None
        # the whole file's SHA-1 once every part was sent (a lost complete answer is then
        # checked without hashing the file again)
        self.digest: str | None = None

    def job(self) -> Job:
        job = self.journal.get(self.job_id)
        if job is None:
            raise Superseded()
        if job.state == "superseded":
            raise Superseded()
        return job

    # -- entry ---------------------------------------------------------------------------
    async def run(self) -> None:
        job = self.journal.get(self.job_id)
        if job is not None and job.state == "superseded" and job.rapid_at and not job.file_id:
            await self._sweep(job)
            return
        try:
            await self._run()
        except Superseded:
            log.info("job %d superseded: abandoned", self.job_id)

    async def _sweep(self, job: Job) -> None:
        """A superseded version whose create's answer was lost (the reaper runs this before
        it lets the version go): the file that create made, if any, is found and trashed."""
        try:
            await self._found_lost(job)  # found: it lands as superseded, so it is trashed
        except Superseded:
            pass
        except OSError as e:  # its bytes are gone: nothing to recognise the file by
            log.info("job %d: cannot look for a lost create's file: %s", self.job_id, e)
            self.journal.clear_rapid(self.job_id)

    async def _run(self) -> None:
        job = self.job()
        if job.state in ("done", "failed", "interrupted"):
            return
        try:
            now_ident = await trio.to_thread.run_sync(identity, job.source)
        except FileNotFoundError:
            raise UploadFailed(f"{job.source} no longer exists; nothing to upload") from None
        landed = job.landed_at is not None or bool(job.file_id and not job.upload_id)
        if now_ident != job.identity and not landed:
            # the local file changed since the session was planned: never mix old and new bytes
            # (a version already complete on the drive finishes landing as it is)
            log.info("%s changed locally: new session", job.source)
            self.journal.set_identity(self.job_id, now_ident)
            self.journal.drop_session(self.job_id)
            job = self.job()
        self.journal.set_state(self.job_id, "uploading")
        corrupt = gone = 0
        while True:
            try:
                await self._converge(self.job())
                return
            except UnverifiablePart as e:
                gone += 1
                if gone >= MAX_SESSIONS_GONE:
                    raise TransientError(
                        f"{e}, {gone} sessions in a row; trying again later"
                    ) from None
                log.info("job %d: %s: new session", self.job_id, e)
                self.journal.drop_session(self.job_id)
                self.urls.clear()
            except CorruptSession as e:
                corrupt += 1
                if corrupt >= 3:
                    raise UploadFailed(
                        "the drive kept storing parts that differ from the local bytes"
                    ) from None
                log.info("job %d: %s: new session", self.job_id, e)
                self.journal.drop_session(self.job_id)
                self.urls.clear()
            except SessionGone:
                gone += 1
                if await self._session_gone(self.job()):
                    return
                if gone >= MAX_SESSIONS_GONE:
                    raise TransientError(
                        f"the drive lost {gone} upload sessions in a row; trying again later"
                    ) from None

    async def _converge(self, job: Job) -> None:
        if job.file_id and not job.upload_id:
            await self._land()  # completed and checked (or rapid): post-steps may remain
            return
        if job.file_id and job.upload_id:
            offset, next_part = await self._reconcile(job)
            await self._stream(self.job(), offset, next_part, None)
            return
        if await self._try_rapid(job):
            return
        sha1 = await sha1_hasher(job.source, 0)
        await self._create(job)
        await self._stream(self.job(), 0, 1, sha1)

    async def _session_gone(self, job: Job) -> bool:
        """The one place a gone session (``SessionGone`` from any call) is decided: done if
        our complete had landed, else the session is dropped and a new one follows."""
        if job.file_id and await self._already_complete(job):
            return True
        log.info("job %d: the drive lost the upload session: new session", self.job_id)
        self.journal.drop_session(self.job_id)
        self.urls.clear()
        self.etag_md5 = None
        return False

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
        self.etag_md5 = None

    async def _try_rapid(self, job: Job) -> bool:
        s = self.settings
        if job.rapid_at is not None and not job.file_id and await self._found_lost(job):
            return True
        if job.size == 0:
            return await self._empty(job)
        if not s.rapid_upload or job.size < s.rapid_threshold:
            return False
        head = (await range_digests(job.source, 0, min(1024, job.size), "sha1"))["sha1"]
        part = plan_part_size(job.size, s.part_size)
        full: str | None = None  # the file's SHA-1, once the pre-hash matched
        try:
            res = await self.client.create_file(
                job.parent_file_id, job.name, job.size, part_sizes(job.size, part), pre_hash=head
            )
        except PreHashMatchedError:
            full = (await range_digests(job.source, 0, job.size, "sha1"))["sha1"]

            async def reader(off: int, n: int) -> bytes:
                return await read_at(job.source, off, n)

            res = await self._rapid_create(
                job, job.size, part_sizes(job.size, part), RapidProof(full, job.size, reader)
            )
        if res.rapid_upload:
            log.info("%s: rapid upload, no bytes sent", job.remote_path)
            await self._rapid_landed(res.file_id, job.parent_file_id, job.name)
            return True
        self.job()
        self._record_session(job, res, part)
        if full is not None:  # hashed already: the parts need not feed a SHA-1
            await self._stream(self.job(), 0, 1, None, full)
        else:
            await self._stream(self.job(), 0, 1, await sha1_hasher(job.source, 0))
        return True

    async def _empty(self, job: Job) -> bool:
        """A zero-byte file: a rapid upload with the SHA-1 of nothing (what the Go CLI
        does); a drive that answers with a session gets one empty part instead."""

        async def nothing(off: int, n: int) -> bytes:
            return b""

        try:
            res = await self._rapid_create(job, 0, [0], RapidProof(EMPTY_SHA1, 0, nothing))
        except PermanentError as e:
            if isinstance(e, RemoteNotFoundError):
                raise
            log.info("%s: no rapid upload for an empty file (%s)", job.remote_path, e.describe())
            return False
        if res.rapid_upload:
            await self._rapid_landed(res.file_id, job.parent_file_id, job.name)
            return True
        self.job()
        self._record_session(job, res, self.settings.part_size)
        await self._stream(self.job(), 0, 1, await sha1_hasher(job.source, 0))
        return True

    async def _rapid_create(
        self, job: Job, size: int, sizes: list[int], proof: RapidProof
    ) -> CreateResult:
        """A create that may make the file at once. Durable intent first; an attempt whose
        answer may have been lost is never sent again blind (``_found_lost`` looks first)."""
        self.journal.note_rapid_create(self.job_id, job.parent_file_id, job.name)
        log.debug("job %d: rapid create of %s sent", self.job_id, job.remote_path)
        try:
            res = await self.client.create_file(
                job.parent_file_id, job.name, size, sizes, rapid=proof
            )
            log.debug("job %d: rapid create answered: %s", self.job_id, res.file_id)
            return res
        except CreateMaybeApplied as e:
            raise TransientError(f"{e}; looking for it before the next try") from None

    async def _found_lost(self, job: Job) -> bool:
        """A rapid create was sent and its answer lost (a crash, a dropped connection): the
        file it made (that name, this version's size and content, a file no job knows) is
        this version's, and lands like any rapid upload instead of a second copy."""
        assert job.created_parent is not None
        assert job.created_name is not None
        try:
            items = await self.client.list_folder(job.created_parent)
        except RemoteNotFoundError:
            return False
        known = self.journal.file_ids()  # (ours, landed lately too: one renamed onto the name)
        assert job.rapid_at is not None
        for f in sorted(items, key=lambda f: f.created_at, reverse=True):
            if f.name != job.created_name or f.is_dir or f.file_id in known:
                continue
            if not f.made_since(job.rapid_at):
                continue  # there before the create was sent: someone's file renamed there
            if await self._same_content(job, f, self.digest):
                log.info("%s: found the file a lost create made: adopted", job.remote_path)
                await self._rapid_landed(f.file_id, job.created_parent, job.created_name)
                return True
        if time.time() - job.rapid_at < LATE:
            # the request may still be on its way or in the drive's hands (a crash or a
            # dropped connection does not stop it there): a second create now could make
            # a second copy, so look again later
            raise TransientError("a create sent before may still land; looking again soon")
        self.journal.clear_rapid(self.job_id)
        return False

    async def _rapid_landed(self, file_id: str, parent: str, name: str) -> None:
        """A rapid upload made the file at once, at (``parent``, ``name``): where its create
        went, which a rename since may have left behind (its post-steps move it on). It is
        recorded whatever the job's state, so a version superseded meanwhile is found and
        trashed by the reaper; then, under the landing lock, it lands like any completed
        upload."""
        self.journal.note_file(self.job_id, file_id, parent, name)
        await self._land()

    # -- reconciliation with the server ---------------------------------------------------
    def _planned_size(self, job: Job, offset: int) -> int:
        assert job.part_size
        return min(job.part_size, job.size - offset)

    async def _reconcile(self, job: Job) -> tuple[int, int]:
        """The server's parts win: adopt (after verifying) or refuse; returns (offset, next).
        A part's size is the server's ``part_size``, else the journal's, else the plan's;
        a part the journal lacks is adopted only when its ETag equals the local MD5."""
        assert job.file_id
        assert job.upload_id
        server = await self.client.list_uploaded_parts(job.file_id, job.upload_id)
        known = {p.part_number: p for p in self.journal.parts(self.job_id)}
        offset = 0
        for i, p in enumerate(server, 1):
            if p.part_number != i:
                raise CorruptSession(f"the drive's parts have a gap at {i}")
            rec = known.get(i)
            if rec is not None and rec.offset != offset:
                rec = None
            size = p.part_size
            if size is None:
                size = rec.size if rec is not None else self._planned_size(job, offset)
            if offset + size > job.size or (size == 0 and job.size > 0):
                raise CorruptSession(f"part {i} reaches past the end of the file")
            if rec is not None and rec.size == size and (not p.etag or rec.etag == p.etag):
                offset += size  # acknowledged to us, and the drive agrees (or says nothing)
                continue
            if not p.etag:
                # the journal lacks it and the drive gives no ETag: it cannot be verified
                raise UnverifiablePart(f"part {i} on the drive cannot be verified (no ETag)")
            d = await range_digests(job.source, offset, size, "md5", "xxh3")
            if d["md5"] != p.etag:
                if self.etag_md5:  # this session's ETags are MD5s: the part really differs
                    raise CorruptSession(f"part {i} on the drive differs from the local bytes")
                # an opaque ETag (or not yet known to be an MD5) proves nothing either way
                raise UnverifiablePart(f"part {i} on the drive cannot be verified (its ETag)")
            self.etag_md5 = True
            self.journal.record_part(
                self.job_id, PartRecord(i, offset, size, p.etag, d["xxh3"], time.time())
            )
            offset += size
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
        if remote.size != job.size or remote.type == "folder":
            return False
        if not await self._same_content(job, remote, self.digest):
            return False
        await self._land()  # superseded: the reaper trashes the file (the job holds it)
        return True

    async def _same_content(
        self, job: Job, remote: RemoteFile, sha1: str | None, *, answered: bool = False
    ) -> bool:
        """The whole-file check: the drive's ``content_hash`` when it gives one (SHA-1);
        else the size and a read-back of the first and last part (ranged GETs). A file the
        drive gives no URL for passes on its size alone only when ``complete`` itself just
        ``answered`` for it; a gone session's file found by id needs more than its size."""
        if remote.size != job.size:
            return False
        if remote.content_hash:
            if sha1 is None and job.size == 0:
                sha1 = EMPTY_SHA1  # nothing to read (its cache file may be gone)
            if sha1 is None:
                sha1 = (await range_digests(job.source, 0, job.size, "sha1"))["sha1"]
            return remote.content_hash.upper() == sha1
        if job.size == 0:
            return True
        part = job.part_size or plan_part_size(job.size, self.settings.part_size)
        spans = {(0, min(part, job.size)), (max(0, job.size - part), job.size)}
        try:
            url = (await self.client.get_download_url(remote.file_id)).url
            for start, end in sorted(spans):
                got = await self.client.download_range(url, start, end)
                if got != await read_at(job.source, start, end - start):
                    return False
        except NoDownloadUrl:
            log.info("%s: no download URL to check it by; its size agrees", job.remote_path)
            return answered
        except RemoteNotFoundError:
            return False
        return True

    # -- the part loop ---------------------------------------------------------------------
    async def _url(self, job: Job, n: int) -> str:
        u = self.urls.get(n)
        if u is None or u.expires_at - self.settings.url_margin < time.time():
            assert job.file_id
            assert job.upload_id
            assert job.part_size
            planned = len(part_sizes(job.size, job.part_size))
            # only parts declared at create (some drives refuse others); beyond, one at a time
            want = list(range(n, min(n + URL_BATCH, planned + 1))) or [n]
            try:
                self.urls.update(
                    await self.client.get_upload_urls(job.file_id, job.upload_id, want)
                )
            except SessionGone:
                raise
            except PermanentError as e:
                if n > planned:
                    raise CorruptSession(
                        f"the drive refuses part {n}, beyond the {planned} planned"
                    ) from None
                raise e
            u = self.urls.get(n)
            if u is None:
                if n > planned:
                    raise CorruptSession(f"the drive gives no URL for part {n} beyond the plan")
                raise UploadFailed(f"the drive gave no upload URL for part {n}")
        return u.url

    async def _stream(
        self, job: Job, offset: int, n: int, sha1: Any, known: str | None = None
    ) -> None:
        """Send parts from ``offset`` as part ``n`` onwards, then complete. If the drive
        refuses to complete (part list, size or hash check), its parts are re-listed and
        whatever it lacks is sent again; a second refusal with nothing missing stops the
        job with the drive's reason (the parts stay, nothing is deleted)."""
        refusals = 0
        digest = known
        while True:
            digest = self.digest = await self._send_parts(job, offset, n, sha1, digest)
            try:
                await self._complete(self.job(), digest)
                return
            except CompleteRejected as e:
                refusals += 1
                if refusals > 1:
                    raise UploadFailed(
                        f"the drive refuses to complete the upload: {e.describe()}"
                    ) from None
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

    async def _etag_is_md5(self, job: Job, n: int, length: int, etag: str, local: str) -> bool:
        """Learn, once per session, whether the drive's part ETag is the part's MD5. Equal
        proves it; not 32 hex digits disproves it; a 32-hex mismatch is an MD5 of other
        bytes when the drive stored the part short, or when part 1 (journaled) matched."""
        if etag == local:
            return True
        if _HEX32.match(etag):
            assert job.file_id
            assert job.upload_id
            for p in await self.client.list_uploaded_parts(job.file_id, job.upload_id):
                if p.part_number == n and p.part_size is not None and p.part_size != length:
                    return True  # stored short: an MD5 of fewer bytes
            first = next(iter(self.journal.parts(self.job_id)), None)
            if first is not None and first.part_number == 1 and n > 1:
                d = await range_digests(job.source, first.offset, first.size, "md5")
                if d["md5"] == first.etag:
                    return True
        log.info("job %d: the drive's part ETags are not MD5s; the whole file is checked",
                 self.job_id)  # fmt: skip
        return False

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
            realigns = failures = 0
            expired: set[int] = set()  # parts whose URL expired once already
            while offset < job.size or (job.size == 0 and n == 1):
                length = min(part, job.size - offset)
                self.job()  # superseded? stop sending
                url = await self._url(job, n)
                body = PartBody(job.source, offset, length, sha1.copy() if sha1 else None)
                try:
                    etag = await self._put(url, body, length)
                except PartConflict:
                    realigns += 1
                    if realigns > MAX_REALIGN:
                        raise
                    offset, n, sha1 = await self._realign(job, sha1, offset)
                    continue
                except PartError as e:
                    if not e.url_expired:
                        raise
                    if n in expired:  # a fresh URL refused as expired too: no loop here
                        raise TransientError(
                            f"part {n}: a fresh upload URL was refused as expired too",
                            status=e.status,
                            code=e.code,
                        ) from None
                    expired.add(n)
                    self.urls.pop(n, None)
                    continue
                except RateLimitedError as e:
                    # the upload host asks to wait: nothing was stored, nothing to re-list
                    await trio.sleep(e.retry_after)
                    continue
                except TransientError as e:
                    # a 5xx (whatever its body), a cut connection: the part may or may not
                    # be stored, so the drive's list decides what goes next
                    failures += 1
                    if failures > MAX_PART_FAILURES:
                        raise
                    delay = 1.0 + backoff(failures - 1, 10.0)
                    log.info("job %d: part %d: %s; re-listing in %.1fs",
                             self.job_id, n, e.describe(), delay)  # fmt: skip
                    self.journal.note_error(self.job_id, e.describe(), time.time() + delay)
                    await trio.sleep(delay)
                    offset, n, sha1 = await self._realign(job, sha1, offset)
                    continue
                crashpoint.reach("after_part_ack")
                local = body.md5.hexdigest().upper()
                if self.etag_md5 is None and etag != local and offset + length >= job.size:
                    pass  # the last part: the whole-file check comes next, nothing to learn
                elif self.etag_md5 is None:
                    self.etag_md5 = await self._etag_is_md5(job, n, length, etag, local)
                if self.etag_md5 and etag != local:
                    # the server stored something else (a cut part kept as complete?): realign
                    realigns += 1
                    if realigns > MAX_REALIGN:
                        raise CorruptSession("the drive's ETags keep differing from ours")
                    offset, n, sha1 = await self._realign(job, sha1, offset)
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

    async def _realign(self, job: Job, sha1: Any, covered: int) -> tuple[int, int, Any]:
        """Re-list the drive's parts and go on from where it is. The running SHA-1 covers
        [0, ``covered``): it is kept, or fed only the bytes the drive has beyond it (a 5xx
        leaves the offset where it was: nothing is read again); hashed anew only when the
        drive is behind it."""
        offset, n = await self._reconcile(job)
        if sha1 is not None and offset != covered:
            sha1 = await sha1_hasher(job.source, offset, sha1, covered)
        return offset, n, sha1

    # -- completion ------------------------------------------------------------------------
    async def _complete(self, job: Job, sha1: str) -> None:
        assert job.file_id
        assert job.upload_id
        crashpoint.reach("before_complete")
        remote = await self.client.complete(
            job.file_id, job.upload_id, before_send=self._completing
        )
        crashpoint.reach("after_complete")
        latest = self.journal.get(self.job_id)
        if latest is None or latest.state == "superseded":
            self.journal.note_completing(self.job_id, sent=False)  # answered: trashed once
            # superseded while complete was in flight: this version must not stay visible
            # (doomed first, so a crash before the trash is finished by the reaper)
            await self._trash(job.file_id, "superseded while its complete was in flight")
            raise Superseded()
        if not remote.content_hash:
            # some readings leave content_hash out of complete's answer: ask the file
            with contextlib.suppress(RemoteNotFoundError):
                remote = await self.client.get_file(job.file_id)
        if not await self._same_content(job, remote, sha1, answered=True):
            await self._trash(job.file_id, "it differed from the local bytes")
            raise CorruptSession(
                f"the drive's file (size {remote.size}, content_hash "
                f"{remote.content_hash or 'none'}) differs from ours (SHA-1 {sha1})"
            )
        await self._land()

    async def _land(self) -> None:
        """The file is complete on the drive and checked. Under the landing lock, in one step
        with the check that no newer version superseded it (no await between), this version
        becomes the name on the drive (``landed_at``; the session is forgotten: a crash from
        here resumes at the post-steps); a newer version replaces it instead of superseding
        it. A superseded one is trashed at once (doomed first, so a crash before the trash
        is finished by the reaper)."""
        async with self.landing:
            latest = self.journal.get(self.job_id)
            if latest is None or latest.state == "superseded":
                log.debug("job %d superseded at landing", self.job_id)
                if latest is not None and latest.file_id:
                    await self._trash(latest.file_id, "superseded before it landed")
                raise Superseded()
            self.journal.mark_landed(self.job_id)
            log.debug("job %d landed as %s", self.job_id, latest.file_id)
            await self._finish()

    def _completing(self) -> None:
        """Right before complete goes out: a newer version exists? Never complete over it.
        Else the complete is noted as sent (until answered, it may land the file late)."""
        self.job()
        self.journal.note_completing(self.job_id, sent=True)

    async def _trash(self, file_id: str, reason: str) -> None:
        self.journal.doom([file_id], reason)
        await self.client.trash(file_id)
        self.journal.trashed(file_id)

    async def _finish(self) -> None:
        """After the version landed: follow renames (a move, then a rename: two steps, each
        journaled as it lands), retire the replaced version, mark done."""
        job = self.job()  # abandoned (its name was removed)? the reaper trashes the file
        assert job.file_id
        file_id = job.file_id

        def step(parent: str, name: str) -> None:
            self.journal.note_file(self.job_id, file_id, parent, name)

        while (job.created_parent, job.created_name) != (job.parent_file_id, job.name):
            try:
                if job.created_parent != job.parent_file_id:
                    await self.client.move(
                        file_id, job.parent_file_id, new_name=job.name, on_step=step,
                        check_name_mode="ignore",
                    )  # fmt: skip
                else:
                    await self.client.rename(file_id, job.name, check_name_mode="ignore")
                    step(job.parent_file_id, job.name)
            except RemoteNotFoundError:
                self.job()
                raise
            job = self.job()  # renamed again while the move was in flight? follow it
        crashpoint.reach("after_move")
        if job.replaces_file_id and job.replaces_file_id != file_id:
            await self.client.trash(job.replaces_file_id)
            crashpoint.reach("after_trash_replaced")
        self.journal.mark_done(self.job_id, job.size)
        self.on_progress(self.job_id, job.size)
        log.info("uploaded %s (%d bytes)", job.remote_path, job.size)
