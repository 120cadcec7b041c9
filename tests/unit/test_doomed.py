"""A doomed drive file is trashed and forgotten; one whose complete may still be in flight
(a superseded version's session) is trashed, hidden for ``LATE`` seconds more, trashed once
more (the complete may have landed it since), then forgotten; ``umount --wait`` does not
wait for that second trash. A fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from panfs import journal as jr
from panfs.metadata import open_db


def test_a_doomed_file_is_trashed_twice_late_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(jr.time, "time", lambda: now[0])
    db = open_db(tmp_path / "j.db")
    try:
        j = jr.Journal(db)
        j.doom(["R"], "a replaced version: nothing of it is in flight")
        j.trashed("R")
        assert j.doomed() == []  # forgotten at once: no second trash
        with db:
            j._doom("F", "a superseded version's session", now[0], late=True)
        assert j.to_trash(now[0]) == ["F"]
        assert j.busy()
        j.trashed("F")  # the first trash
        assert j.doomed() == ["F"]  # still hidden from listings
        assert j.to_trash(now[0]) == []
        assert not j.busy()  # nothing to wait for
        now[0] += jr.LATE / 2
        j.trashed("F")  # trashed again early (another path): still kept
        assert j.to_trash(now[0]) == []
        now[0] += jr.LATE
        assert j.to_trash(now[0]) == ["F"]  # once more, late
        j.trashed("F")
        assert j.doomed() == []
    finally:
        db.close()


def test_a_superseded_version_whose_create_answer_was_lost_keeps_umount_waiting(
    tmp_path: Path,
) -> None:
    """Its create may have made a file under the name (looked for and trashed by the
    reaper): until then ``umount --wait`` has work left on the drive."""
    db = open_db(tmp_path / "j.db")
    try:
        j = jr.Journal(db)
        src = tmp_path / "v1"
        src.write_bytes(b"")
        job, _ = j.add(source=str(src), parent_file_id="root", name="f", remote_path="/f")
        j.note_rapid_create(job.id, "root", "f")
        assert j.supersede(job.id)
        assert j.busy()  # the file that create made may stand under /f
        j.clear_rapid(job.id)  # looked for long enough: nothing was made
        assert not j.busy()
    finally:
        db.close()
