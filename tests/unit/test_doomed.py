"""A doomed drive file is trashed and forgotten; one whose complete was sent and never
answered (a superseded version's session cut off mid-complete) may still be landed by the
drive until ``LATE`` after that complete: it is trashed, hidden until then, trashed once
more, then forgotten, and ``umount --wait`` waits for that second trash. A fake clock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from panfs import journal as jr
from panfs.metadata import open_db


def _job(j: jr.Journal, tmp_path: Path, name: str) -> jr.Job:
    src = tmp_path / name
    src.write_bytes(b"")
    job, _ = j.add(source=str(src), parent_file_id="root", name=name, remote_path=f"/{name}")
    return job


@contextlib.contextmanager
def _session_of_x(tmp_path: Path) -> Iterator[tuple[jr.Journal, jr.Job]]:
    """A journal whose job for ``/x`` has a session: its drive file ``F``."""
    db = open_db(tmp_path / "j.db")
    try:
        j = jr.Journal(db)
        job = _job(j, tmp_path, "x")
        j.start_session(job.id, file_id="F", upload_id="U", part_size=1 << 20,
                        parent_file_id="root", name="x")  # fmt: skip
        yield j, job
    finally:
        db.close()


def test_a_file_whose_complete_went_unanswered_is_trashed_again_after_late(
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
        assert not j.busy()
        answered = _job(j, tmp_path, "a")  # its complete was answered: one trash
        cut = _job(j, tmp_path, "b")  # its complete went out and the daemon died
        for job, fid in ((answered, "A"), (cut, "F")):
            with db:
                db.execute("UPDATE jobs SET state = 'uploading', file_id = ? WHERE id = ?",
                           (fid, job.id))  # fmt: skip
            j.note_completing(job.id, sent=True)
        j.note_completing(answered.id, sent=False)
        now[0] += 5
        for job in (answered, cut):
            assert j.supersede(job.id)
            j.retire_superseded(job.id)
        assert sorted(j.to_trash(now[0])) == ["A", "F"]
        j.trashed("A")
        j.trashed("F")  # the first trash
        assert j.doomed() == ["F"]  # still hidden: the complete may land it
        assert j.to_trash(now[0]) == []
        assert j.busy()  # umount --wait waits for the second trash
        now[0] += jr.LATE - 5  # LATE after the complete was sent
        assert j.to_trash(now[0]) == ["F"]  # once more, late
        j.trashed("F")
        assert j.doomed() == []
        assert not j.busy()
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
        job = _job(j, tmp_path, "f")
        j.note_rapid_create(job.id, "root", "f")
        assert j.supersede(job.id)
        assert j.busy()  # the file that create made may stand under /f
        j.clear_rapid(job.id)  # looked for long enough: nothing was made
        assert not j.busy()
    finally:
        db.close()


def test_a_file_on_its_way_to_its_name_is_hidden_in_any_folder(tmp_path: Path) -> None:
    """Created as /x, renamed to /c/b: the move of its post-steps may land (its answer lost
    to a stop) and leave it as /c/x; no listing, of / or of c, may show it by that name."""
    with _session_of_x(tmp_path) as (j, job):
        j.retarget(job.id, parent_file_id="C", name="b", remote_path="/c/b")
        assert "F" in j.hidden_file_ids()  # in / as x, or in c as x after the move
        j.mark_landed(job.id)
        assert "F" in j.hidden_file_ids()  # landed, its post-steps' move not done
        j.note_file(job.id, "F", "C", "b")  # at its name now
        assert "F" not in j.hidden_file_ids()


def test_a_versions_file_is_hidden_until_it_lands(tmp_path: Path) -> None:
    """Complete on the drive, its answer not yet checked (or lost to a stop): the name
    stands for the file the version replaces until it lands."""
    with _session_of_x(tmp_path) as (j, job):
        assert "F" in j.hidden_file_ids()
        j.mark_landed(job.id)
        assert "F" not in j.hidden_file_ids()
        j.mark_done(job.id, 10)
        assert "F" not in j.hidden_file_ids()
