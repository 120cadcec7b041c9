"""Files listings stopped hiding, remembered in time order (``Journal.unhidden_since``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from panfs import journal as journal_mod
from panfs.journal import Journal
from panfs.metadata import open_db


def test_a_listing_asked_before_an_unhide_still_hides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    conn = open_db(tmp_path / "journal.db")
    try:
        j = Journal(conn)
        j.trashed("a")  # unhidden at 1000
        now[0] = 1010.0
        j.trashed("b")  # at 1010
        now[0] = 1020.0
        j.trashed("a")  # again, at 1020: newest now
        assert j.unhidden_since(1005.0) == {"a", "b"}
        assert j.unhidden_since(1015.0) == {"a"}
        assert j.unhidden_since(1021.0) == set()
        now[0] = 1020.0 + journal_mod.UNHIDDEN_KEEP + 5  # b is forgotten at the next unhide
        j.trashed("c")
        assert j.unhidden_since(0.0) == {"c"}
    finally:
        conn.close()
