"""``panfs forget PATH...``: drop a failed or interrupted file for good.

Owns: saying exactly what will be lost (the local copy, its size, why it is not
on the drive; that the drive keeps whatever version it has), asking for
confirmation unless ``--yes``, and then marking its job ``superseded`` (it never
uploads). With no daemon running the local copy is deleted at once; with one
running, it goes at the daemon's next start (the mount may still be reading it;
``rm`` in the mount drops it at once). A ``panfs upload`` job's source is the
user's own file and is never deleted. Must not: talk to the drive.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from panfs import exitcodes, lock
from panfs.config import format_size
from panfs.errors import UsageError
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


def run(args: argparse.Namespace) -> int:
    from panfs.commands.shared import open_journal, target, wake

    journal, paths = target(args)
    conn = open_journal(journal)
    state_dir = journal.parent
    data_dir = os.path.realpath(state_dir / "data")
    try:
        marks = ",".join("?" * len(paths))
        rows = conn.execute(
            "SELECT id, remote_path, state, source, size, error, file_id FROM jobs"
            f" WHERE state IN ('failed', 'interrupted') AND remote_path IN ({marks})"
            " ORDER BY id",
            paths,
        ).fetchall()
        found = {r[1] for r in rows}
        for p in paths:
            if p not in found:
                raise UsageError(f"{quote(p)}: no failed or interrupted upload of that name "
                                 "(panfs status lists them)")  # fmt: skip
        for _, path, state, source, size, error, _ in rows:
            ours = os.path.dirname(os.path.realpath(source)) == data_dir
            what = (f"the only copy of {quote(path)} ({format_size(size)}, {state}"
                    + (f": {error}" if error else "") + ")")  # fmt: skip
            where = f"its local copy {source} is deleted" if ours else (
                f"your file {source} is kept; only its upload is dropped")  # fmt: skip
            print(f"will forget {what}: {where}; the drive keeps whatever it has of it")
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("not asking on a non-terminal: add --yes to forget them")
            answer = input("forget them? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                print("nothing forgotten")
                return exitcodes.OK
        running = lock.is_held(state_dir)
        with conn:
            for job_id, *_ in rows:
                conn.execute(
                    "UPDATE jobs SET state = 'superseded', updated_at = ? WHERE id = ?",
                    (time.time(), job_id),
                )
        if not running:
            for job_id, _path, _s, source, _size, _e, file_id in rows:
                if os.path.dirname(os.path.realpath(source)) == data_dir:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(source)
                    with conn:
                        conn.execute("DELETE FROM attrs WHERE key = ?", ("v:" + source,))
                if file_id is None:
                    with conn:
                        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    finally:
        conn.close()
    for _, path, *_ in rows:
        print(f"forgotten: {quote(path)}")
    if running:
        wake(state_dir)
        print("the mount still lists them until it restarts; rm them in the mount to drop "
              "them from it now")  # fmt: skip
    return exitcodes.OK
