"""``panfs status [MOUNTPOINT] [--json] [--watch]``: what is waiting, uploading, stuck.

Owns: reading the journals (read-only, beside a running daemon: SQLite WAL; the
mount's, and each ``panfs upload`` command's under ``CACHE_DIR/uploads/``) and
showing each pending, uploading, interrupted or failed file with bytes sent /
total, rate, ETA, last error and next retry, plus totals; whether a daemon is
serving it or the files will resume at the next mount. Must not: write the
journal or talk to the drive.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panfs import config, lock, registry

if TYPE_CHECKING:
    from panfs.journal import Job, JobState, Journal

HELP = "show pending, uploading, interrupted and failed files"

SHOWN: tuple[JobState, ...] = ("pending", "uploading", "interrupted", "failed")
RATE_WINDOW = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", type=Path, nargs="?")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--watch", action="store_true", help="redraw progress until interrupted")


@dataclass
class Row:
    job: Job
    rate: float  # bytes/s over the last parts
    eta: float | None

    def as_dict(self) -> dict[str, Any]:
        j = self.job
        return {
            "id": j.id,
            "path": j.remote_path,
            "state": j.state,
            "size": j.size,
            "sent": j.sent_bytes,
            "rate": round(self.rate),
            "eta": self.eta,
            "error": j.error,
            "next_retry_at": j.next_retry_at,
            "source": j.source,
        }


def _rate(journal: Journal, job: Job, now: float) -> float:
    recent = [p for p in journal.parts(job.id) if now - p.acked_at <= RATE_WINDOW]
    if len(recent) < 2:
        return 0.0
    span = recent[-1].acked_at - recent[0].acked_at
    return sum(p.size for p in recent[1:]) / span if span > 0 else 0.0


def collect(cache_dir: Path) -> tuple[list[Row], bool]:
    """Rows for every job worth showing, and whether a daemon holds the cache dir now."""
    from panfs.journal import Journal
    from panfs.metadata import open_db

    paths = [cache_dir / "journal.db", *sorted(cache_dir.glob("uploads/*/journal.db"))]
    rows = []
    for db_path in paths:
        if not db_path.exists():
            continue
        db = open_db(db_path)
        try:
            journal = Journal(db)
            now = time.time()
            for job in journal.jobs(SHOWN):
                rate = _rate(journal, job, now) if job.state == "uploading" else 0.0
                eta = (job.size - job.sent_bytes) / rate if rate > 0 else None
                rows.append(Row(job, rate, eta))
        finally:
            db.close()
    if not (cache_dir / "journal.db").exists():
        return rows, False
    return rows, _daemon_alive(cache_dir)


def _daemon_alive(cache_dir: Path) -> bool:
    try:
        held = lock.acquire(cache_dir)
    except Exception:
        return True
    held.release()
    return False


def _human(n: float) -> str:
    return config.format_size(n)


def render(rows: list[Row], alive: bool) -> str:
    if not rows:
        return "nothing to upload: every file is on the drive"
    lines = []
    for r in rows:
        j = r.job
        pct = 100 * j.sent_bytes / j.size if j.size else 100.0
        done = f"{_human(j.sent_bytes)} / {_human(j.size)} ({pct:.0f}%)"
        line = f"{j.state:<12} {j.remote_path}  {done}"
        if r.rate:
            line += f"  {_human(r.rate)}/s"
        if r.eta is not None:
            line += f"  ETA {r.eta:.0f}s"
        if j.state == "interrupted":
            line += "  (writer was cut off: re-copy it, or remove it; kept at " + j.source + ")"
        if j.error:
            line += f"  last error: {j.error}"
        if j.next_retry_at:
            line += f"  next retry in {max(0.0, j.next_retry_at - time.time()):.0f}s"
        lines.append(line)
    waiting = [r for r in rows if r.job.state in ("pending", "uploading")]
    total = sum(r.job.size for r in waiting)
    sent = sum(r.job.sent_bytes for r in waiting)
    lines.append(
        f"total: {len(waiting)} to upload, {_human(sent)} / {_human(total)} sent"
        + ("" if alive or not waiting else "; they resume at the next mount")
    )
    return "\n".join(lines)


def _cache_dir(args: argparse.Namespace) -> Path:
    if args.mountpoint is not None:
        info = registry.find_mount(args.mountpoint.expanduser().absolute())
        if info is not None:
            return Path(info["cache_dir"])
    return config.load(args.config).cache_dir


def run(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args)
    if args.watch:
        from panfs.progress import watch_status

        watch_status(lambda: collect(cache_dir))
        return 0
    rows, alive = collect(cache_dir)
    if args.json:
        print(
            json.dumps(
                {
                    "daemon": alive,
                    "cache_dir": str(cache_dir),
                    "files": [r.as_dict() for r in rows],
                },
                indent=1,
            )
        )
    else:
        print(render(rows, alive))
    return 0
