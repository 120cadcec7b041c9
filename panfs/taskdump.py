"""What every task of the daemon waits on, for a mount that seems hung.

Owns: walking trio's task tree from the root task and writing each task's name and the
``file:line function`` it awaits at, innermost last, indented by nursery depth. The
daemon logs it on SIGUSR2 (``kill -USR2 <pid>``; its ``mounted`` log line names the
pid). Must not: change or cancel any task, or be called outside the trio thread.
"""

from __future__ import annotations

import os
from types import FrameType

import trio

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TRIO_CORE = os.path.join(os.path.dirname(os.path.abspath(trio.__file__)), "_core")


def _where(frame: FrameType, lineno: int) -> str:
    code = frame.f_code
    path = code.co_filename
    if path.startswith(_HERE + os.sep):
        path = os.path.relpath(path, _HERE)
    else:  # a library's: its last two parts say enough
        path = os.sep.join(path.split(os.sep)[-2:])
    return f"{path}:{lineno} {code.co_name}"


def task_tree() -> str:
    """One line per task (its name), then one per frame it awaits in."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}- {task.name}")
        lines.extend(
            f"{pad}    {_where(f, n)}"
            for f, n in task.iter_await_frames()
            if _TRIO_CORE not in f.f_code.co_filename  # the scheduler's own frames: noise
        )
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)  # type: ignore[arg-type]
    return "\n".join(lines)
