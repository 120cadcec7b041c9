"""How big the heaviest tests run: the sizes the issues name, or CI-sized ones.

``PANFS_TEST_FULL=1`` runs the sizes each promise was stated at (a 4 GiB cut copy, 3,000
files under the strict profile, 200 MiB trees, a 2 GiB ``dd``); by default the same tests
run at sizes that keep the whole suite inside its time budget on two cores. The outcome
asserted is the same at both sizes; only the volume differs.
"""

from __future__ import annotations

import os

FULL = os.environ.get("PANFS_TEST_FULL") == "1"


def pick(full: int, ci: int) -> int:
    """``full`` under ``PANFS_TEST_FULL=1``, else ``ci``."""
    return full if FULL else ci
