"""Named crash points: where a test may have panfs SIGKILL itself, at an exact moment.

Owns: reading ``PANFS_CRASH_AT`` (``NAME`` or ``NAME:N``, the N-th time the point
is reached, 1 by default) once, and killing this process with a real SIGKILL when
the named point is reached. Random-time kills cannot hit a window a few
microseconds wide; this lets ``tests/crash/test_crash_windows.py`` die in each
window of ``docs/crash-windows.md``. Unset (always, outside tests) it costs one
comparison. Must not: do anything else, or be reachable from configuration.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("PANFS_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_left = int(_COUNT or 1) if _NAME else 0


def reach(name: str) -> None:
    """The process is at ``name``; die here if a test asked for it."""
    global _left
    if name != _NAME or _left <= 0:
        return
    _left -= 1
    if _left == 0:
        os.kill(os.getpid(), signal.SIGKILL)
