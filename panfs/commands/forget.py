"""``panfs forget PATH...``: drop a failed or interrupted file for good.

Owns: saying exactly what will be lost (the local copy, its size, why it is not
on the drive; that the drive keeps whatever version it has), asking for
confirmation unless ``--yes``, and then, for each job still failed or interrupted
once the answer came, marking it ``superseded`` (it never uploads) or, for one whose
bytes already landed on the drive (a later step failed), dropping its row (the
drive file stays). With no daemon running the local copy is deleted at once; a
running daemon is woken (SIGUSR1) and drops it from the mount at once (a copy the
mount is still reading goes once it is closed). A ``panfs upload`` job's source is
the user's own file and is never deleted. Must not: talk to the drive.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from panfs import exitcodes, lock
from panfs.attrs import AttrStore, drive_key, version_key
from panfs.commands.shared import open_journal, target, wake
from panfs.config import format_size
from panfs.errors import UsageError
from panfs.journal import Job, Journal
from panfs.logs import quote

HELP = "drop a failed or interrupted upload for good (says what is lost, asks first)"
EXAMPLE = """examples:
  panfs forget ~/pan/broken.iso         asks, then drops the local copy that failed
  panfs forget --yes --mount /mnt/pan /backup/cut.bin"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="in the mount, or on the drive")
    parser.add_argument("--mount", type=Path, help="the mount point the paths belong to")
    parser.add_argument("--config", type=Path)
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask")


def _ours(source: str, data_dir: str) -> bool:
    """A copy the mount made (in STATE_DIR/data), not a ``panfs upload`` user's own file."""
    return os.path.dirname(os.path.realpath(source)) == data_dir


def _announce(job: Job, data_dir: str) -> None:
    why = f"{job.state}" + (f": {job.error}" if job.error else "")
    where = (f"its local copy {job.source} is deleted" if _ours(job.source, data_dir)
             else f"your file {job.source} is kept; only its upload is dropped")  # fmt: skip
    if job.landed_at is not None:
        print(f"will forget {quote(job.remote_path)} ({format_size(job.size)}, {why}): its "
              f"bytes are on the drive, which keeps them; {where}")  # fmt: skip
    else:
        print(f"will forget the only copy of {quote(job.remote_path)} ({format_size(job.size)}"
              f", {why}): {where}; the drive keeps whatever it has of it")  # fmt: skip


def _drop(journal: Journal, job_id: int) -> Job | None:
    """Forget one job as it is now (the prompt took time: ``panfs retry`` may have queued
    it again, or it may have landed): a landed one's row goes and its drive file stays; any
    other is superseded (guarded: still failed or interrupted, still unlanded). Returns the
    job as it was forgotten, or None when it is no longer failed or interrupted."""
    for _ in range(2):  # once more if it landed between the read and the supersede
        job = journal.get(job_id)
        if job is None or job.state not in ("failed", "interrupted"):
            return None
        if job.landed_at is not None:
            return job if journal.remove_landed(job_id) else None
        if journal.supersede(job_id):
            return job
    return None


def run(args: argparse.Namespace) -> int:
    journal_path, paths = target(args)
    conn = open_journal(journal_path)
    state_dir = journal_path.parent
    data_dir = os.path.realpath(state_dir / "data")
    forgotten: list[Job] = []
    changed: list[str] = []
    running = False
    try:
        journal = Journal(conn)
        named = set(paths)
        rows = [j for j in journal.jobs(("failed", "interrupted")) if j.remote_path in named]
        found = {j.remote_path for j in rows}
        for p in paths:
            if p not in found:
                raise UsageError(f"{quote(p)}: no failed or interrupted upload of that name "
                                 "(panfs status lists them)")  # fmt: skip
        for job in rows:
            _announce(job, data_dir)
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("not asking on a non-terminal: add --yes to forget them")
            answer = input("forget them? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print("nothing forgotten")
                return exitcodes.OK
        running = lock.is_held(state_dir)
        for job in rows:
            dropped = _drop(journal, job.id)
            if dropped is None:
                changed.append(job.remote_path)
            else:
                forgotten.append(dropped)
        if not running:
            attrs = AttrStore(conn)
            for job in forgotten:
                if _ours(job.source, data_dir):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(job.source)
                    if job.landed_at is not None and job.file_id:
                        # what cp -p / rsync -a set stays with the drive file
                        attrs.rekey(version_key(job.source), drive_key(job.file_id))
                    else:
                        attrs.drop(version_key(job.source))
                if job.landed_at is None and job.file_id is None:
                    journal.remove(job.id)  # nothing of it on the drive for the reaper to trash
    finally:
        conn.close()
    for p in changed:
        print(f"panfs forget: {quote(p)} is no longer failed or interrupted (panfs retry queued "
              "it again?): left as it is; panfs status shows it", file=sys.stderr)  # fmt: skip
    for job in forgotten:
        print(f"forgotten: {quote(job.remote_path)}")
    if running and forgotten and wake(state_dir):
        print("the running mount drops them now (a copy still open there goes once it is "
              "closed, or at the next mount)")  # fmt: skip
    return exitcodes.ATTENTION if changed else exitcodes.OK
