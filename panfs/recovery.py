"""Start-up repair: what becomes of local files after any stop.

Owns: turning versions whose writer was cut off into ``interrupted`` jobs (or
queueing them when their last close was recorded and the file is unchanged);
settling every upload that ended (a landed version's cache file becomes clean
cache, a superseded one's goes); deleting cache files nothing refers to. Every
step is idempotent, so a crash between two of them is repaired by the next start.
Must not: talk to the drive or the kernel (doomed drive files are the uploader's
reaper's), or decide filesystem policy. The runtime half lives in ``versions.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from panfs.attrs import AttrStore
from panfs.cache import Cache
from panfs.clean_cache import CleanCache
from panfs.journal import JobState, Journal
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


class Recovery:
    def __init__(
        self,
        *,
        journal: Journal,
        versions: OpenVersions,
        clean: CleanCache,
        attrs: AttrStore,
        cache: Cache,
        job_ended: Callable[[int], None],
    ) -> None:
        self.journal = journal
        self.versions = versions
        self.clean = clean
        self.attrs = attrs
        self.cache = cache
        self.job_ended = job_ended

    def at_start(self) -> list[int]:
        """Repair after any stop; returns the jobs made ``interrupted``."""
        self.journal.supersede_older_duplicates()
        interrupted = []
        for v in self.versions.all():
            if self.journal.by_source(v.cache_path) is None:
                whole = _closed_whole(v)
                # a cut-off version keeps what the name had queued before it (nothing
                # written is dropped); a whole one supersedes it like any last close
                job, _ = self.journal.add(
                    source=v.cache_path,
                    parent_file_id=v.parent_file_id,
                    name=v.name,
                    remote_path=v.remote_path,
                    replaces_file_id=v.replaces_file_id,
                    state="pending" if whole else "interrupted",
                    supersede=whole,
                )
                if whole:
                    log.info("closed before the daemon stopped, queued: %s", v.remote_path)
                else:
                    interrupted.append(job.id)
                    log.warning("interrupted write kept: %s (%s)", v.remote_path, v.cache_path)
            # else: the last close had queued it already (died between the two commits)
            self.versions.remove(v.cache_path)
        for job in self.journal.jobs(("done", "superseded")):
            self.job_ended(job.id)
        self.clean.forget_missing()
        self._remove_orphans()
        return interrupted

    def _remove_orphans(self) -> None:
        """Cache files nothing refers to are removed, but empty ones in the dirty folder
        that no job row names: spares made ahead (``Cache.keep_spares``), or a version's
        file taken for a CREATE the kill cut short before anything was written: they serve
        as spares again."""
        referenced = {v.cache_path for v in self.versions.all()}
        referenced |= {j.source for j in self.journal.jobs(LIVE)}
        referenced |= self.clean.paths()
        # a superseded version's row may still name its file (removed when it is retired):
        # such a file is never a spare, or the retiring would remove another version's bytes
        named = {j.source for j in self.journal.jobs()}
        removed = 0
        for folder in dict.fromkeys((self.cache.data, self.cache.clean_data)):
            for entry in os.scandir(folder):
                name, path = entry.name, entry.path
                if entry.is_file() and not name.startswith(".") and path not in referenced:
                    if folder == self.cache.data and path not in named and not entry.stat().st_size:
                        self.cache.adopt_spare(path)  # empty: made ahead, or as good as
                        continue
                    self.cache.remove(path)
                    removed += 1
        for key in self.attrs.version_keys():
            if key[2:] not in referenced:
                self.attrs.drop(key)
        if removed:
            log.info("cache: removed %d files nothing referred to", removed)
