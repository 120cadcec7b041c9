"""``panfs umount MOUNTPOINT [--wait]``: unmount, optionally once every upload is done.

Owns: finding the daemon's cache dir for a mount point, polling its journal until
no job is pending or uploading (``--wait``), and the unmount itself
(``fusermount3 -u``, or ``umount`` for root). Must not: talk to the drive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

from panfs.errors import LocalError, UsageError

HELP = "unmount; with --wait, first wait until every upload is done"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--wait", action="store_true", help="wait until every upload is done")


def wait_uploads(cache_dir: Path, poll: float = 0.2) -> None:
    """Block until the journal in ``cache_dir`` has nothing to upload and nothing to trash."""
    from panfs.journal import Journal
    from panfs.metadata import open_db

    db = open_db(cache_dir / "journal.db")
    try:
        journal = Journal(db)
        journal.clear_delays()  # no write-back delay to wait out: upload now
        while journal.busy():
            time.sleep(poll)
    finally:
        db.close()


def unmount(mp: Path) -> None:
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    cmd = [tool, "-u", str(mp)] if tool else ["umount", str(mp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise LocalError(f"cannot unmount {mp}: {msg[-1] if msg else 'unknown error'}")


def _wait_gone(pid: int, limit: float = 30.0) -> None:
    """Let the daemon finish its shutdown (it cancels uploads; they resume next mount)."""
    deadline = time.monotonic() + limit
    while pid > 0 and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def run(args: argparse.Namespace) -> int:
    from panfs import registry

    mp = args.mountpoint.expanduser().absolute()
    if not os.path.ismount(mp):
        raise UsageError(f"{mp} is not mounted")
    info = registry.find_mount(mp)
    if args.wait:
        if info is None:
            raise LocalError(f"no panfs daemon is recorded for {mp}; is it a panfs mount?")
        wait_uploads(Path(info["cache_dir"]))
    unmount(mp)
    if info is not None:
        _wait_gone(int(info.get("pid", 0)))
    return 0
