"""``panfs status [MOUNTPOINT] [--json] [--watch]``: what is waiting, uploading, stuck.

Owns: finding the state of a mount (by its mount point, whatever config it was
started with, or by ``--config``), showing each pending, uploading, failed or
interrupted file (and, with no daemon running, writes that were cut off) with
bytes sent / total, rate, ETA, last error and next retry; saying when the drive
has been unreachable and since when instead of a stale rate; whether a daemon
is serving it; and the exit code (3 when a file needs attention, with what to
do). Must not: write the journal or talk to the drive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from panfs import exitcodes
from panfs.commands.shared import advice, human, journal_for, line
from panfs.logs import quote
from panfs.overview import Overview

HELP = "show pending, uploading, interrupted and failed files"
EXAMPLE = """examples:
  panfs status                 the mount of the default config
  panfs status /mnt/pan        the mount at /mnt/pan, whatever config it was started with
  panfs status --json          machine-readable; exit code 3 when a file needs attention
  panfs status --watch         redraw until Ctrl-C (plain lines when piped)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", type=Path, nargs="?")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--watch", action="store_true", help="redraw progress until interrupted")


def _ago(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render(ov: Overview) -> str:
    lines = []
    if not ov.daemon:
        lines.append(
            f"the panfs daemon is not running (state {ov.journal.parent})"
            + (": what is listed resumes at the next panfs mount" if ov.files else "")
        )
    if not ov.files:
        lines.append("nothing to upload: every file is on the drive")
        return "\n".join(lines)
    lines += [line(ov, f) for f in ov.files]
    since = ov.unreachable_since()
    if since is not None:
        at = time.strftime("%H:%M:%S", time.localtime(since))
        lines.append(
            f"the drive has not acknowledged anything since {at} ({_ago(ov.now - since)} ago):"
            " it is unreachable or refusing; retrying"
            + (f"; last error: {quote(ov.last_error)}" if ov.last_error else "")
        )
    waiting = ov.waiting
    total = sum(f.size for f in waiting)
    sent = sum(f.sent for f in waiting)
    lines.append(f"total: {len(waiting)} to upload, {human(sent)} / {human(total)} sent")
    lines += advice(ov.attention)
    return "\n".join(lines)


def as_dict(ov: Overview) -> dict[str, Any]:
    return {
        "daemon": ov.daemon,
        "state_dir": str(ov.journal.parent),
        "unreachable_since": ov.unreachable_since(),
        "attention": len(ov.attention),
        "files": [
            {
                "id": f.id,
                "path": f.path,
                "state": f.state,
                "size": f.size,
                "sent": f.sent,
                "rate": round(f.rate),
                "error": f.error,
                "next_retry_at": f.next_retry_at,
                "source": f.source,
            }
            for f in ov.files
        ],
    }


def exit_code(ov: Overview) -> int:
    return exitcodes.ATTENTION if ov.attention else exitcodes.OK


def run(args: argparse.Namespace) -> int:
    from panfs.overview import read

    journal = journal_for(args.mountpoint, args.config)
    if args.watch:
        try:
            if sys.stdout.isatty():
                from panfs.progress import watch_status

                watch_status(lambda: read(journal))
            else:
                _watch_plain(journal)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch ends
        return exit_code(read(journal))
    ov = read(journal)
    if args.json:
        print(json.dumps(as_dict(ov), indent=1))
    else:
        print(render(ov))
    return exit_code(ov)


def _watch_plain(journal: Path, interval: float = 1.0) -> None:
    """Piped: one line per file whenever its state or bytes change (and one when it is done)."""
    from panfs.overview import read

    last: dict[tuple[int | None, str], tuple[str, int, str]] = {}
    try:
        while True:
            ov = read(journal)
            seen = set()
            for f in ov.files:
                key = (f.id, f.source)
                seen.add(key)
                if last.get(key) != (f.state, f.sent, f.path):
                    last[key] = (f.state, f.sent, f.path)
                    print(time.strftime("%H:%M:%S ") + line(ov, f), flush=True)
            for key in [k for k in last if k not in seen]:
                path = last.pop(key)[2]
                print(time.strftime("%H:%M:%S ") + f"{'finished':<12} {quote(path)}", flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        return
