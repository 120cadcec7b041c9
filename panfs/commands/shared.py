"""What several commands share: finding a mount's journal, changing it, waking its daemon,
and one line per file.

Owns: the journal of a mount point (registry / fsname) or of a config, the drive paths a
command's PATH arguments name, opening the journal to write (one line when this user
cannot), SIGUSR1 to the daemon holding the state dir, and how a file and the advice for
files that need attention are shown. Must not: talk to the drive, or change the journal
itself (the commands do, through ``panfs.journal``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
from pathlib import Path

from panfs import lock, mounts
from panfs.errors import LocalError, UsageError
from panfs.logs import quote
from panfs.metadata import open_db
from panfs.overview import FileState, Overview


def journal_for(mountpoint: Path | None, config_path: Path | None) -> Path:
    """The journal of the mount at ``mountpoint`` (registry / fsname), else of the config."""
    from panfs import config, migrate, registry
    from panfs.paths import Layout

    if mountpoint is not None:
        mp = mounts.resolve(mountpoint)
        state = registry.state_dir_of(mp)
        if state is not None:
            return state / "journal.db"
        if config_path is None:
            raise UsageError(f"no panfs mount is known at {mp}; give its config: --config FILE")
    return migrate.journal_path(Layout.of(config.load(config_path)))


def target(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The journal to change and the drive paths named (empty: all)."""
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


def open_journal(journal: Path) -> sqlite3.Connection:
    """The journal, to write (beside a running daemon: SQLite WAL); one line if this user
    cannot."""
    if not journal.exists():
        raise UsageError(f"no journal at {journal}: nothing was ever queued there")
    conn: sqlite3.Connection | None = None
    try:
        conn = open_db(journal)
        conn.execute("BEGIN IMMEDIATE").execute("ROLLBACK")
    except sqlite3.Error as e:
        if conn is not None:
            conn.close()
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


def human(n: float) -> str:
    from panfs.config import format_size

    return format_size(n)


def line(ov: Overview, f: FileState) -> str:
    pct = 100 * f.sent / f.size if f.size else 100.0
    out = f"{f.state:<12} {quote(f.path)}  {human(f.sent)} / {human(f.size)} ({pct:.0f}%)"
    rate = f.rate
    if rate:
        out += f"  {human(rate)}/s  ETA {(f.size - f.sent) / rate:.0f}s"
    if f.state == "interrupted":
        why = "kept, not uploaded" if f.error else "its writer was cut off"
        out += f"  ({why}: re-copy it, or panfs forget it)"
    if f.state == "closed":
        out += "  (closed; queued for upload"
        out += ")" if ov.daemon else " at the next mount)"
    if f.error:
        out += f"  last error: {quote(f.error)}"
    if f.next_retry_at and ov.daemon:
        out += f"  next retry in {max(0.0, f.next_retry_at - ov.now):.0f}s"
    return out


def advice(attention: list[FileState]) -> list[str]:
    """What to do about the files that need attention (failed, or cut off)."""
    lines = []
    failed = [f for f in attention if f.state == "failed"]
    cut = [f for f in attention if f.state == "interrupted"]
    if failed:
        lines.append(
            f"{len(failed)} file(s) failed for good: fix the cause shown, then run "
            "panfs retry (all) or panfs retry PATH; to drop one: panfs forget PATH"
        )
    if cut:
        lines.append(
            f"{len(cut)} file(s) were cut off while written: copy them into the mount again, "
            "or drop them: panfs forget PATH"
        )
    return lines
