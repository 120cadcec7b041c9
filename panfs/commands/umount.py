"""``panfs umount MOUNTPOINT [--wait]``: unmount, optionally once every closed file is on the drive.

Owns: checking that the mount point is a panfs mount (``fuse.panfs`` in
/proc/self/mountinfo; anything else is refused in one line), detaching a mount
whose daemon died (lazy unmount), finding the mount's state dir whatever config
it was started with, ``--wait``: polling its journal until no file of the mount is
pending, uploading, or closed but not yet queued (the kernel's RELEASE, and the
fsync before the job is written, come after close() returned; ``panfs upload`` runs
beside the mount keep their own journals and are not waited for), with progress on
a terminal; the unmount itself; and the exit code (3 when files of the mount need
attention).
Must not: talk to the drive.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from panfs import exitcodes, mounts
from panfs.errors import LocalError

HELP = "unmount; with --wait, first wait until every closed file is on the drive"
EXAMPLE = """examples:
  panfs umount ~/pan           unmount now; files not yet uploaded resume at the next mount
  panfs umount --wait ~/pan    return once every closed file is on the drive (exit 3 if
                               some failed or were cut off; panfs status says which)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument(
        "--wait", action="store_true", help="wait until every closed file is on the drive"
    )


def _no_delay(journal: Path) -> None:
    """Versions waiting out the write-back delay start now (best effort: a reader of
    another user's mount may not write its journal)."""
    import sqlite3

    from panfs.journal import Journal

    try:
        conn = sqlite3.connect(journal, timeout=5)
        try:
            Journal(conn).clear_delays()
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def wait_uploads(journal: Path, poll: float = 0.2, show: bool = False) -> bool:
    """Block until nothing in ``journal`` is pending, uploading, or closed-not-yet-queued.
    Returns False if the daemon stopped first (what is left resumes at the next mount)."""
    from panfs.overview import read

    bar = _Bar() if show else None
    try:
        while True:
            ov = read(journal)
            if not ov.mount_waiting and not ov.cleanup:
                return True
            if any(f.state == "pending" for f in ov.mount_waiting):
                _no_delay(journal)
            if not ov.daemon:
                return False
            if bar is not None:
                bar.draw(ov)
            time.sleep(poll)
    finally:
        if bar is not None:
            bar.close()


class _Bar:
    """One line on the terminal, rewritten: files left, bytes sent / total."""

    def __init__(self) -> None:
        self.drawn = False

    def draw(self, ov: object) -> None:
        from panfs.config import format_size
        from panfs.overview import Overview

        assert isinstance(ov, Overview)
        waiting = ov.mount_waiting
        total, sent = sum(f.size for f in waiting), sum(f.sent for f in waiting)
        pct = 100 * sent / total if total else 0.0
        text = (
            f"waiting for {len(waiting)} file(s): {format_size(sent)} / {format_size(total)}"
            f" ({pct:.0f}%)"
        )
        if ov.unreachable_since() is not None:
            text += "; the drive is not answering, retrying"
        sys.stderr.write("\r\x1b[K" + text)
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _wait_gone(pid: int, limit: float = 30.0) -> None:
    """Let the daemon finish its shutdown (it cancels uploads; they resume next mount)."""
    deadline = time.monotonic() + limit
    while pid > 0 and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def _attention(journal: Path) -> int:
    from panfs.commands.shared import advice, line
    from panfs.overview import read

    if not journal.exists():
        return exitcodes.OK
    ov = read(journal)
    if not ov.mount_attention:
        return exitcodes.OK
    for f in ov.mount_attention:
        print(f"panfs umount: {line(ov, f)}", file=sys.stderr)
    for text in advice(ov.mount_attention):
        print(f"panfs umount: {text}", file=sys.stderr)
    return exitcodes.ATTENTION


def run(args: argparse.Namespace) -> int:
    from panfs import lock, registry

    mp = mounts.resolve(args.mountpoint)
    mounts.panfs_mount(mp, "umount")  # refuses anything that is not a panfs mount
    state = registry.state_dir_of(mp)
    journal = state / "journal.db" if state is not None else None
    if mounts.is_dead(mp):
        mounts.unmount(mp, lazy=True)
        print(f"panfs umount: {mp}: its daemon had died; detached the mount", file=sys.stderr)
        if journal is not None and args.wait:
            from panfs.overview import read

            left = read(journal).mount_waiting if journal.exists() else []
            if left:
                print(
                    f"panfs umount: {len(left)} file(s) are not on the drive yet; they resume "
                    f"at the next panfs mount of {mp}",
                    file=sys.stderr,
                )
                return exitcodes.ATTENTION
        return _attention(journal) if journal is not None and args.wait else exitcodes.OK
    info = registry.find_mount(mp)
    pid = int(info.get("pid", 0)) if info else 0
    if state is not None and pid <= 0:
        held = (lock.holder(state) or {}).get("pid", 0)
        pid = held if isinstance(held, int) else 0
    if args.wait:
        if journal is None:
            raise LocalError(f"cannot find the state of the panfs mount at {mp}; is it yours?")
        if not wait_uploads(journal, show=sys.stderr.isatty()):
            raise LocalError(
                f"the panfs daemon of {mp} stopped before every file was on the drive; "
                "they resume at the next panfs mount"
            )
    mounts.unmount(mp)
    _wait_gone(pid)
    return _attention(journal) if args.wait and journal is not None else exitcodes.OK
