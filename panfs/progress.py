"""Progress display for people: rich bars for ``panfs upload`` and ``panfs status --watch``.

Owns: drawing per-file and overall bars (bytes, rate, ETA) from plain numbers.
Must not: read the journal or talk to the drive (callers hand it rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def make_progress(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console or Console(stderr=True),
        transient=False,
    )


class Bars:
    """One bar per key plus an overall bar; ``update`` is cheap and idempotent."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[Any, TaskID] = {}
        self.total = progress.add_task("[bold]total", total=0, note="")

    def update(self, key: Any, label: str, done: int, total: int, note: str = "") -> None:
        task = self.tasks.get(key)
        if task is None:
            task = self.progress.add_task(label, total=total, note=note)
            self.tasks[key] = task
        self.progress.update(task, completed=done, total=total, note=note, description=label)

    def overall(self, done: int, total: int) -> None:
        self.progress.update(self.total, completed=done, total=total)


def watch_status(collect: Callable[[], tuple[list[Any], bool]], interval: float = 1.0) -> None:
    """Redraw ``panfs status`` rows as bars until interrupted (Ctrl-C)."""
    with make_progress(Console()) as progress:
        bars = Bars(progress)
        try:
            while True:
                rows, _alive = collect()
                for r in rows:
                    j = r.job
                    note = j.state if j.state != "uploading" else ""
                    if j.error:
                        note += f" {j.error[:60]}"
                    bars.update(j.id, j.remote_path, j.sent_bytes, j.size, note.strip())
                bars.overall(sum(r.job.sent_bytes for r in rows), sum(r.job.size for r in rows))
                time.sleep(interval)
        except KeyboardInterrupt:
            return
