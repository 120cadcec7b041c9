"""What becomes of local files once their fate is known: at start-up and when an upload ends.

Owns: turning versions whose writer was cut off into ``interrupted`` jobs; retiring
all but the newest active job of one name; handing an uploaded version's cache file
to the clean cache and its attributes to its ``file_id``; pointing a newer local
version at the drive file it now replaces; deleting cache files nothing refers to.
Every step is idempotent, so a crash between two of them is repaired by the next
start. Must not: talk to the drive or the kernel, or decide filesystem policy.
"""

from __future__ import annotations

import logging
import os

from panfs.attrs import AttrStore, drive_key, version_key
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.inodes import InodeTable
from panfs.journal import Job, JobState, Journal
from panfs.pending import OpenVersion, OpenVersions

log = logging.getLogger(__name__)

# their cache files are dirty data
LIVE: tuple[JobState, ...] = ("pending", "uploading", "interrupted", "failed")


def _closed_whole(v: OpenVersion) -> bool:
    """Its last writer's close() was recorded and the file has not changed since."""
    if v.flushed_size is None:
        return False
    try:
        st = os.stat(v.cache_path)
    except FileNotFoundError:
        return False
    return (st.st_size, st.st_mtime_ns) == (v.flushed_size, v.flushed_mtime_ns)


class Settler:
    def __init__(
        self,
        *,
        journal: Journal,
        versions: OpenVersions,
        clean: CleanCache,
        attrs: AttrStore,
        cache: Cache,
        inodes: InodeTable,
    ) -> None:
        self.journal = journal
        self.versions = versions
        self.clean = clean
        self.attrs = attrs
        self.cache = cache
        self.inodes = inodes

    def _ours(self, source: str) -> bool:
        return os.path.dirname(source) == str(self.cache.data)

    # -- start-up ----------------------------------------------------------------------
    def at_start(self) -> list[int]:
        """Repair after any stop; returns the jobs made ``interrupted``."""
        self.journal.supersede_older_duplicates()
        interrupted = []
        for v in self.versions.all():
            if self.journal.by_source(v.cache_path) is None:
                whole = _closed_whole(v)
                job = self.journal.add(
                    source=v.cache_path,
                    parent_file_id=v.parent_file_id,
                    name=v.name,
                    remote_path=v.remote_path,
                    replaces_file_id=v.replaces_file_id,
                    state="pending" if whole else "interrupted",
                )
                if whole:
                    log.info("closed before the daemon stopped, queued: %s", v.remote_path)
                else:
                    interrupted.append(job.id)
                    log.info("interrupted write kept: %s (%s)", v.remote_path, v.cache_path)
            # else: the last close had queued it already (died between the two commits)
            self.versions.remove(v.cache_path)
        for job in self.journal.jobs(("done", "superseded")):
            self.job_ended(job.id)
        self.clean.forget_missing()
        self._remove_orphans()
        return interrupted

    def _remove_orphans(self) -> None:
        referenced = {v.cache_path for v in self.versions.all()}
        referenced |= {j.source for j in self.journal.jobs(LIVE)}
        referenced |= self.clean.paths()
        removed = 0
        for entry in os.scandir(self.cache.data):
            if entry.is_file() and not entry.name.startswith(".") and entry.path not in referenced:
                self.cache.remove(entry.path)
                removed += 1
        for key in self.attrs.version_keys():
            if key[2:] not in referenced:
                self.attrs.drop(key)
        if removed:
            log.info("cache: removed %d files nothing referred to", removed)

    # -- an upload ended ---------------------------------------------------------------
    def job_ended(self, job_id: int) -> None:
        """Called whenever an upload stops (any outcome). No await."""
        job = self.journal.get(job_id)
        if job is None or not self._ours(job.source):
            return  # `panfs upload` of a user's file: nothing of ours to settle
        if job.state == "done" and job.file_id:
            self._landed(job, job.file_id)
            self.inodes.settle_version(job.source)
        elif job.state == "superseded" and not self._in_use(job.source):
            self.cache.remove(job.source)
            self.attrs.drop(version_key(job.source))
            self.inodes.settle_version(job.source)
            if job.file_id is None:
                # nothing of it reached the drive: no listing needs the row to hide it
                self.journal.remove(job.id)

    def _landed(self, job: Job, file_id: str) -> None:
        node = self.inodes.version_owner(job.source)  # no scan of every node per upload
        if node is not None:
            node.file_id = file_id
            if node.job_id == job.id:
                node.job_id = None
            if node.cache_path == job.source:
                node.cache_path, node.dirty = None, False  # clean now: served from the cache
            elif node.cache_path is not None:
                # a newer local version exists: what just landed is what it replaces
                if self.versions.get(node.cache_path) is not None:
                    self.versions.set_replaces(node.cache_path, file_id)
                if node.job_id is not None:
                    self.journal.set_replaces(node.job_id, file_id)
        self.attrs.rekey(version_key(job.source), drive_key(file_id))
        self.clean.adopt(file_id, job.source, job.size)
        self.journal.remove(job.id)

    def _in_use(self, path: str) -> bool:
        node = self.inodes.version_owner(path)
        return node is not None and node.cache_path == path
