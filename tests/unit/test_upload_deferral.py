"""New uploads wait while files are written through the mount (they share the thread that
serves FUSE requests), until the writing pauses, and never longer than ``MAX_DEFER`` in a
row. A fake clock: no time passes in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from panfs import uploader as up
from panfs.journal import Journal
from panfs.metadata import open_db
from panfs.upload_session import SessionSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _never(job_id: int) -> None:
    raise AssertionError("no upload runs here")


def test_uploads_wait_for_a_pause_in_the_writing_but_not_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(up.time, "monotonic", clock)
    db = open_db(tmp_path / "j.db")
    try:
        u = up.Uploader(Journal(db), _never, up.UploadSettings(SessionSettings()))
        assert u._deferred() == 0.0  # nothing written: uploads start at once
        u.foreground()
        assert u._deferred() == pytest.approx(up.GRACE)
        clock.now += up.GRACE / 2
        assert u._deferred() == pytest.approx(up.GRACE / 2)
        clock.now += up.GRACE  # the writing paused
        assert u._deferred() == 0.0
        # writing that never pauses: uploads start after MAX_DEFER, and are not held back
        # again while it goes on
        waited = 0.0
        while u._deferred() > 0 or waited == 0.0:
            u.foreground()
            clock.now += 0.1
            waited += 0.1
            assert waited <= up.MAX_DEFER + 0.2
        assert waited >= up.MAX_DEFER
        for _ in range(100):
            u.foreground()
            clock.now += 0.1
            assert u._deferred() == 0.0
        clock.now += up.GRACE  # a pause; then writing holds them back again
        assert u._deferred() == 0.0
        u.foreground()
        assert u._deferred() == pytest.approx(up.GRACE)
    finally:
        db.close()
