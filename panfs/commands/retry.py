"""``panfs retry [PATH...]``: queue failed files again, after the cause was fixed.

Owns: finding the mount's journal (a PATH inside a mount names that mount; else
``--mount`` or ``--config``), turning ``failed`` jobs (all, or those of the given
drive paths) back into ``pending``, and waking the daemon (SIGUSR1) when one
runs; with none running they upload at the next ``panfs mount``. Must not: touch
the files' bytes or talk to the drive.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from panfs import exitcodes, lock, mounts
from panfs.errors import LocalError, UsageError
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


def target(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The journal to change and the drive paths named (empty: all)."""
    from panfs.commands.status import journal_for

    mount = args.mount
    drive_paths: list[str] = []
    for raw in args.paths:
        p = Path(raw).expanduser()
        inside = mounts.containing(Path(os.path.abspath(p)))
        if inside is not None:
            mp, rel = inside
            if mount is not None and mounts.resolve(mount) != mp:
                raise UsageError(f"{raw} is in the mount at {mp}, not in {mount}")
            mount = mp
            drive_paths.append("/" + rel if rel != "." else "/")
        elif raw.startswith("/"):
            drive_paths.append(raw.rstrip("/") or "/")
        else:
            raise UsageError(f"{raw}: give a path in a panfs mount, or a drive path like /dir/file")
    return journal_for(mount, args.config), drive_paths


def connect(journal: Path) -> sqlite3.Connection:
    if not journal.exists():
        raise UsageError(f"no journal at {journal}: nothing was ever queued there")
    try:
        conn = sqlite3.connect(journal, timeout=30)
        conn.execute("BEGIN IMMEDIATE").execute("ROLLBACK")
    except sqlite3.Error as e:
        raise LocalError(
            f"cannot write the journal {journal} ({e}); run this as the user that mounted"
        ) from None
    return conn


def wake(state_dir: Path) -> bool:
    """Tell a running daemon the journal changed (SIGUSR1); False if none runs."""
    if not lock.is_held(state_dir):
        return False
    pid = (lock.holder(state_dir) or {}).get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, signal.SIGUSR1)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run(args: argparse.Namespace) -> int:
    journal, paths = target(args)
    conn = connect(journal)
    try:
        marks = ",".join("?" * len(paths))
        where = f" AND remote_path IN ({marks})" if paths else ""
        rows = conn.execute(
            f"SELECT id, remote_path, state FROM jobs WHERE state IN ('failed', 'interrupted')"
            f"{where} ORDER BY id",
            paths,
        ).fetchall()
        failed = [(i, p) for i, p, s in rows if s == "failed"]
        cut = [p for _, p, s in rows if s == "interrupted"]
        with conn:
            for job_id, _ in failed:
                conn.execute(
                    "UPDATE jobs SET state = 'pending', error = NULL, next_retry_at = NULL,"
                    " updated_at = ? WHERE id = ? AND state = 'failed'",
                    (time.time(), job_id),
                )
    finally:
        conn.close()
    for p in cut:
        print(f"panfs retry: {quote(p)} was cut off while written, so its bytes are not the "
              "whole file: copy it into the mount again, or: panfs forget PATH",
              file=sys.stderr)  # fmt: skip
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
    return exitcodes.ATTENTION if cut else exitcodes.OK
