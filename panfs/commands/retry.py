"""``panfs retry [PATH...]``: queue failed files again, after the cause was fixed.

Owns: finding the mount's journal (a PATH inside a mount names that mount; else
``--mount`` or ``--config``), turning ``failed`` jobs (all, or those of the given
drive paths) back into ``pending``, and waking the daemon (SIGUSR1) when one
runs; with none running they upload at the next ``panfs mount``. Must not: touch
the files' bytes or talk to the drive.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panfs import exitcodes
from panfs.commands.shared import open_journal, target, wake
from panfs.journal import RECOVERED_ID, Journal
from panfs.logs import quote

HELP = "queue failed uploads again (after fixing what made them fail)"
EXAMPLE = """examples:
  panfs retry                      every failed file of the default config's mount
  panfs retry ~/pan/big.iso        one file, named by its path in the mount
  panfs retry --mount /mnt/pan /backup/big.iso    a drive path of the mount at /mnt/pan"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="in the mount, or on the drive")
    parser.add_argument("--mount", type=Path, help="the mount point the paths belong to")
    parser.add_argument("--config", type=Path)


def run(args: argparse.Namespace) -> int:
    journal, paths = target(args)
    conn = open_journal(journal)
    try:
        jobs = Journal(conn)
        named = set(paths)
        rows = [
            j for j in jobs.jobs(("failed", "interrupted")) if not paths or j.remote_path in named
        ]
        aside = [job.remote_path for job in rows if job.parent_file_id == RECOVERED_ID]
        rows = [job for job in rows if job.parent_file_id != RECOVERED_ID]
        cut = [job.remote_path for job in rows if job.state == "interrupted"]
        requeued = set(jobs.requeue_failed(j.id for j in rows if j.state == "failed"))
        failed = [(job.id, job.remote_path) for job in rows if job.id in requeued]
    finally:
        conn.close()
    for p in aside:
        print(f"panfs retry: {quote(p)} was set aside when a newer version took its name: "
              "copy it out of the mount's recovery folder, then: panfs forget PATH",
              file=sys.stderr)  # fmt: skip
    for p in cut:
        print(f"panfs retry: {quote(p)} was cut off while written, so its bytes are not the "
              "whole file: copy it into the mount again, or: panfs forget PATH",
              file=sys.stderr)  # fmt: skip
    cut += aside  # both need the user, not a retry
    missing = [p for p in paths if p not in {q for _, q in failed} and p not in cut]
    for p in missing:
        print(f"panfs retry: {quote(p)}: no failed upload of that name", file=sys.stderr)
    if not failed:
        print("panfs retry: no failed uploads to queue again")
        return exitcodes.ATTENTION if cut else (exitcodes.USAGE if missing else exitcodes.OK)
    for _, p in failed:
        print(f"queued again: {quote(p)}")
    if wake(journal.parent):
        print("the daemon is uploading them now (panfs status shows progress)")
    else:
        print("no panfs daemon runs for it: they upload at the next panfs mount")
    return exitcodes.ATTENTION if cut else (exitcodes.USAGE if missing else exitcodes.OK)
