"""Whether the drive answers, as the mount daemon sees it: ``STATE_DIR/drive-health.json``.

Owns: the file's name and shape (``since``: when the drive last acknowledged a part,
``error``: the last error), writing it (temp + rename) and removing it, for the
daemon; reading it, for ``panfs status`` and ``umount --wait``. Must not: decide
when the drive counts as unreachable (the daemon's reporter does).
"""

from __future__ import annotations

import json
from pathlib import Path

from panfs.atomic import write_atomic

HEALTH_FILE = "drive-health.json"


def write(state_dir: Path, since: float, error: str) -> None:
    write_atomic(state_dir / HEALTH_FILE, json.dumps({"since": since, "error": error[:300]}))


def clear(state_dir: Path) -> None:
    (state_dir / HEALTH_FILE).unlink(missing_ok=True)


def read(state_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((state_dir / HEALTH_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
