"""Progress display for people: rich bars for ``panfs upload`` and ``panfs status --watch``.

Owns: drawing per-file and overall bars (bytes, rate, ETA) from plain numbers.
Must not: read the journal or talk to the drive (callers hand it rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
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

    def remove(self, key: Any) -> None:
        task = self.tasks.pop(key, None)
        if task is not None:
            self.progress.remove_task(task)

    def overall(self, done: int, total: int) -> None:
        self.progress.update(self.total, completed=done, total=total)


def watch_status(collect: Callable[[], Any], interval: float = 1.0) -> None:
    """Redraw ``panfs status`` as bars until interrupted (Ctrl-C); finished files go away.
    ``collect()`` returns an ``overview.Overview``."""
    with make_progress(Console()) as progress:
        bars = Bars(progress)
        try:
            while True:
                ov = collect()
                keys = set()
                for f in ov.files:
                    key = (f.id, f.source)
                    keys.add(key)
                    note = f.state if f.state != "uploading" else ""
                    if f.error:
                        note += f" {f.error[:60]!r}"
                    bars.update(key, escape(repr(f.path)[1:-1]), f.sent, f.size, note.strip())
                for key in [k for k in bars.tasks if k not in keys]:
                    bars.remove(key)
                waiting = ov.waiting
                bars.overall(sum(f.sent for f in waiting), sum(f.size for f in waiting))
                time.sleep(interval)
        except KeyboardInterrupt:
            return
