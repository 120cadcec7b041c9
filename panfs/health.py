"""Whether the drive answers, as the mount daemon sees it: ``STATE_DIR/drive-health.json``.

Owns: the file's name and shape (``since``: when the drive last acknowledged a part,
``error``: the last error), writing it (temp + rename) and removing it, for the
daemon; reading it, for ``panfs status`` and ``umount --wait``. Must not: decide
when the drive counts as unreachable (the daemon's reporter does).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from panfs.atomic import write_atomic

log = logging.getLogger(__name__)

HEALTH_FILE = "drive-health.json"


def write(state_dir: Path, since: float, error: str) -> None:
    """Best effort: a full or read-only state disk only leaves status without the outage
    (the daemon that calls this must not stop over it)."""
    try:
        write_atomic(state_dir / HEALTH_FILE, json.dumps({"since": since, "error": error[:300]}))
    except OSError as e:
        log.warning("cannot record the drive's outage for panfs status: %s", e.strerror)


def clear(state_dir: Path) -> None:
    try:
        (state_dir / HEALTH_FILE).unlink(missing_ok=True)
    except OSError as e:
        log.warning("cannot clear the drive's outage record: %s", e.strerror)


def read(state_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((state_dir / HEALTH_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
